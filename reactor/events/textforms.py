"""Events written down as text: ``redis-cli`` XRANGE output and JSON lines, and files of them.

Used by ``reactor rules test --event FILE``, by replay from a file (``entries_from_file``: each
event addressed as an event store would, by stream and entry id), and by the tests that read
the examples of SuperMQ's event catalogue.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactor.errors import ConfigError

# One redis-cli reply line: any number of "N)" list markers, then quoted strings.
_MARKERS = re.compile(r"^\s*(?:\d+\)\s*)*")
_QUOTED = re.compile(r'\s*"((?:[^"\\]|\\.)*)"\s*')
_ENTRY_ID = re.compile(r"^\d+-\d+$")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b"}


@dataclass(frozen=True, slots=True)
class TextEvent:
    """One event read from text: the entry id (when the text has one) and its payload."""

    entry_id: str
    payload: dict[str, str] | str
    subject: str = ""


def _unescape(text: str) -> str:
    """Undo redis-cli's quoting: ``\\"``, ``\\\\``, ``\\n``, ``\\xHH``. redis-cli writes every byte
    outside printable ASCII as ``\\xHH``, so the bytes are gathered and decoded as UTF-8 at the
    end (``caf\\xc3\\xa9`` is ``café``; bytes that are not UTF-8 become U+FFFD)."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out += ch.encode("utf-8")
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "x" and i + 3 < len(text) + 1:
            try:
                out.append(int(text[i + 2 : i + 4], 16))
            except ValueError:
                out += text[i : i + 4].encode("utf-8")
            i += 4
            continue
        out += _ESCAPES.get(nxt, nxt).encode("utf-8")
        i += 2
    return out.decode("utf-8", errors="replace")


def _quoted_form(text: str) -> bool:
    """redis-cli's terminal form (``1) "..."``, also ``--no-raw``) rather than its plain form, which
    it prints when its output is a pipe or a file: one value a line, unquoted."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    rest = first[_MARKERS.match(first).end() :]  # type: ignore[union-attr]  # the pattern matches empty
    return rest.startswith('"')


def parse_redis_cli(text: str) -> list[TextEvent]:
    """Entries of ``redis-cli XRANGE``/``XREAD`` output: an entry id, then field/value pairs.

    Both of redis-cli's forms are read: the quoted one (a terminal, or ``--no-raw``), whose list
    numbering is ignored (the catalogue's examples number it inconsistently) and may be left out,
    and the plain one (a pipe or a file: one value a line; a value holding a line break cannot be
    told apart there). Without a leading entry id, the pairs form one entry with an empty id.
    """
    lines = text.splitlines()
    if _quoted_form(text):
        values = [(n, v) for n, line in enumerate(lines, 1) if line.strip() for v in _quoted_strings(line, n)]
    else:  # an empty value is an empty line there: only the blank lines around the entries go
        start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
        values = [(n, line) for n, line in enumerate(lines[start:], start + 1)]
    return _entries(values)


def _entries(strings: list[tuple[int, str]]) -> list[TextEvent]:
    events: list[TextEvent] = []
    entry_id: str | None = None
    values: list[str] = []

    def flush() -> None:
        if entry_id is None:
            return
        while len(values) % 2 and values[-1] == "":
            values.pop()  # the file's own line end after the last value (plain form)
        if len(values) % 2:
            raise ValueError(f"entry {entry_id}: odd number of field/value strings ({len(values)})")
        pairs = dict(zip(values[::2], values[1::2], strict=True))
        events.append(TextEvent(entry_id, pairs))

    for _, value in strings:
        if _ENTRY_ID.match(value) and len(values) % 2 == 0:
            flush()
            entry_id, values = value, []
        elif entry_id is None:  # field/value pairs with no entry id
            entry_id, values = "", [value]
        else:
            values.append(value)
    flush()
    return events


def _quoted_strings(line: str, lineno: int) -> list[str]:
    pos = _MARKERS.match(line).end()  # type: ignore[union-attr]  # the pattern matches empty
    out = []
    while pos < len(line):
        match = _QUOTED.match(line, pos)
        if match is None:
            raise ValueError(f"line {lineno}: not a redis-cli reply line: {line.strip()[:60]!r}")
        out.append(_unescape(match.group(1)))
        pos = match.end()
    if not out:
        raise ValueError(f"line {lineno}: not a redis-cli reply line: {line.strip()[:60]!r}")
    return out


def parse_json_messages(text: str) -> list[TextEvent]:
    """JSON events: one object, JSON lines, or ``Subject: ...`` headers each followed by a JSON body.
    A line that is not a JSON object is kept as it is (the decoder then says why it is no event),
    so one bad line does not hide the events after it."""
    events: list[TextEvent] = []
    decoder = json.JSONDecoder()
    subject = ""
    pos = 0
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        if text.startswith("Subject:", pos):
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            subject = text[pos + len("Subject:") : end].split(maxsplit=1)[0]
            pos = end
            continue
        try:
            obj, end = decoder.raw_decode(text, pos)
        except ValueError:
            obj, end = None, pos
        if not isinstance(obj, dict):  # not an event: kept as its line, for the decoder to report
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            events.append(TextEvent("", text[pos:end], subject))
        else:
            events.append(TextEvent("", json.dumps(obj), subject))
        pos = end
    return events


def parse_event_text(text: str) -> list[TextEvent]:
    """Events from a file in either form, told apart by the first non-blank character."""
    head = text.lstrip()[:1]
    if head in ("{", "S"):
        return parse_json_messages(text)
    return parse_redis_cli(text)


def json_payload(event: TextEvent) -> dict[str, Any]:
    """The payload of a JSON text event as a dict (for tests and reports)."""
    payload = event.payload
    parsed: dict[str, Any] = json.loads(payload) if isinstance(payload, str) else dict(payload)
    return parsed


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One event of a file, addressed as an event store would: its stream, entry id and payload."""

    stream: str
    entry_id: str
    payload: dict[str, str] | bytes


def read_named_file(path: Path, what: str) -> str:
    """The text of a file an operator named (for ``what``), or a ``ConfigError`` naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{what}: cannot read {path}: {reason}") from exc


def entries_from_file(path: Path, stream: str) -> list[FileEntry]:
    """The events of a file: a JSON ``Subject:`` header names the stream (else ``stream``), an entry
    without an id is ``FILE#N``."""
    out = []
    for n, item in enumerate(parse_event_text(read_named_file(path, "replay")), 1):
        payload = item.payload.encode() if isinstance(item.payload, str) else item.payload
        subject = item.subject.removeprefix("events.") if item.subject else ""
        out.append(FileEntry(subject or stream, item.entry_id or f"{path.name}#{n}", payload))
    return out
