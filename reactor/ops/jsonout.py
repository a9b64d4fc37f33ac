"""The ``--json`` form of the read verbs (``dlq list/show``, ``history``, ``rules test``, ``certs
inspect``): one JSON document on stdout, the same facts as the text form, for scripts.

What is printed comes from what is stored: dead-letter records and audit rows were masked when
written, dry-run parameters are masked by the dry run. Nothing here unmasks anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from reactor.actions.base import ActionRegistry
from reactor.certs.validate import Verdict
from reactor.errors import ConfigError, DecodeError, RuleSetError
from reactor.events.decode import Decoder
from reactor.ops.audit import AuditRow
from reactor.rules.cli import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK, read_events
from reactor.rules.dryrun import dry_run
from reactor.rules.loader import load_rules
from reactor.sources.base import Record


def dump(document: Any, out: TextIO, *, indent: int | None = 2) -> None:
    print(json.dumps(document, indent=indent, sort_keys=True, default=str), file=out)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def record_document(record: Record) -> dict[str, Any]:
    """A dead-letter record: its id, its fields, the original event as an object."""
    fields: dict[str, Any] = dict(record.fields)
    fields["event"] = _json_or_text(fields.get("event", "{}"))
    return {"id": record.id, **fields}


def records_document(records: Sequence[Record]) -> list[dict[str, Any]]:
    return [record_document(r) for r in records]


def history_document(rows: Sequence[AuditRow]) -> list[dict[str, Any]]:
    """The audit rows, oldest first, ``params`` as an object where it is JSON."""
    return [{**asdict(row), "params": _json_or_text(row.params)} for row in rows]


def verdict_document(verdict: Verdict) -> dict[str, Any]:
    return verdict.as_dict()


def dry_run_json(
    event_file: Path,
    directory: Path,
    registry: ActionRegistry,
    decoder: Decoder,
    out: TextIO,
    *,
    stream: str = "supermq.bootstrap",
    expect: list[str] | None = None,
) -> int:
    """``rules test --json``: ``{"events": [...], "errors": [...]}`` and the text form's exit code
    (0 all match, 1 a mismatch or a malformed event, 2 the rules or the file cannot be read)."""
    try:
        rules = load_rules(directory, registry)
    except RuleSetError as exc:
        dump({"events": [], "errors": [str(e) for e in exc.errors]}, out)
        return EXIT_ERROR
    try:
        events = read_events(event_file, stream, decoder)
    except (OSError, ValueError, DecodeError, ConfigError) as exc:
        dump({"events": [], "errors": [f"{event_file}: {exc}"]}, out)
        return EXIT_ERROR
    status, documents = EXIT_OK, []
    for event in events:
        if isinstance(event, DecodeError):
            documents.append({"malformed": str(event), "ok": False})
            status = EXIT_MISMATCH
            continue
        reports = dry_run(rules, event)
        matched = [r.rule for r in reports if r.matched]
        ok = sorted(matched) == sorted(expect) if expect is not None else bool(matched)
        documents.append(
            {"event": event.summary(), "rules": [asdict(r) for r in reports], "matched": matched, "ok": ok}
        )
        if not ok:
            status = EXIT_MISMATCH
    dump({"events": documents, "errors": [], "expect": expect}, out)
    return status
