"""Rows for the terminal tables of the read verbs (the text and JSON forms are elsewhere)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from reactor.sources.base import Record

RECORD_COLUMNS = ("id", "at (UTC)", "reason", "stream / entry", "rule / action", "error")


def record_rows(records: Sequence[Record]) -> list[tuple[str, ...]]:
    """``dlq list`` on a terminal: the same facts as its plain text, a row per record."""
    rows: list[tuple[str, ...]] = []
    for r in records:
        f = r.fields
        at = datetime.fromtimestamp(r.at_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") if r.at_ns else "-"
        what = f"{f.get('rule', '')} {f.get('action', '')}".strip() or "-"
        status = f" [{f['status']}]" if f.get("status") else ""
        rows.append(
            (
                r.id,
                at,
                f.get("reason", ""),
                f"{f.get('stream', '')} {f.get('entry_id', '')}",
                what,
                (f.get("error", "") + status)[:200],
            )
        )
    return rows
