"""``reactor rules ...``: offline work on rule files (no server, no side effects)."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from reactor.actions.base import ActionRegistry
from reactor.errors import ConfigError, DecodeError, RuleSetError
from reactor.events.decode import Decoder
from reactor.events.model import Event
from reactor.events.textforms import entries_from_file
from reactor.rules.dryrun import dry_run, print_report
from reactor.rules.loader import load_rules
from reactor.rules.ruleset import RuleSet

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2


def _load(directory: Path, registry: ActionRegistry, out: TextIO) -> RuleSet | None:
    try:
        return load_rules(directory, registry)
    except RuleSetError as exc:
        for err in exc.errors:
            print(f"error: {err}", file=out)
        print(f"{len(exc.errors)} error(s) in {directory}", file=out)
        return None


def check_command(directory: Path, registry: ActionRegistry, out: TextIO) -> int:
    """Validate every rule file; print each error with file:line and rule; exit 1 on any."""
    rules = _load(directory, registry, out)
    if rules is None:
        return EXIT_MISMATCH
    print(f"ok: {len(rules)} rule(s) in {len(rules.files)} file(s) under {directory}", file=out)
    return EXIT_OK


def read_events(path: Path, stream: str, decoder: Decoder) -> list[Event | DecodeError]:
    """Events from a JSON or redis-cli file (a JSON ``Subject:`` header names the stream); an
    entry that is no event is its ``DecodeError``, in its place."""
    out: list[Event | DecodeError] = []
    for d in entries_from_file(path, stream):
        try:
            out.append(decoder.decode(d.payload, source="file", stream=d.stream, entry_id=d.entry_id))
        except DecodeError as exc:
            out.append(exc)
    return out


def dry_run_command(
    event_file: Path,
    directory: Path,
    registry: ActionRegistry,
    decoder: Decoder,
    out: TextIO,
    *,
    stream: str = "supermq.bootstrap",
    expect: list[str] | None = None,
) -> int:
    """Dry-run each event of ``event_file`` through the rules.

    Exit 0 when every event matches at least one rule (or exactly the ``expect``ed rules), 1 when
    one does not or is malformed (reported in its place; the others still run), 2 when the rules
    or the event file cannot be read.
    """
    rules = _load(directory, registry, out)
    if rules is None:
        return EXIT_ERROR
    try:
        events = read_events(event_file, stream, decoder)
    except (OSError, ValueError, DecodeError, ConfigError) as exc:
        print(f"error: {event_file}: {exc}", file=out)
        return EXIT_ERROR
    status = EXIT_OK
    for event in events:
        if isinstance(event, DecodeError):  # reported, and the events after it still run
            print(f"event {event}\n  MALFORMED: not an event; the daemon would dead-letter it", file=out)
            status = EXIT_MISMATCH
            continue
        reports = dry_run(rules, event)
        print_report(event, reports, out)
        matched = [r.rule for r in reports if r.matched]
        if (expect is not None and sorted(matched) != sorted(expect)) or (expect is None and not matched):
            want = f"expected {sorted(expect)}" if expect is not None else "expected a match"
            print(f"  MISMATCH: matched {matched}, {want}", file=out)
            status = EXIT_MISMATCH
    return status
