"""The dead-letter stream, for operators: list, show, replay and purge records.

Replay puts a record's original event back through the rules as a *redelivery* of its original
stream entry, so the steps that completed before are skipped (idempotency). A record that
succeeds is removed from the dead-letter stream; one that fails again is replaced by a new record
with the new reason. A record's ``event`` is masked (what ``dlq show`` prints); its ``sealed``
field holds the event as received, encrypted under the ``[secrets]`` key, and is what a replay
sends again (secrets included). A record without it, or sealed under another key, replays its
masked event (``***`` where the secrets were), and the replay says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from reactor.durations import duration_s
from reactor.errors import ConfigError
from reactor.redact import redact, redact_text
from reactor.secrets import Sealer
from reactor.sources.base import (
    DeadLetter,
    DeadLetterStore,
    Delivery,
    Record,
    Source,
    StoreStatus,
    StreamStatus,
)


def parse_since(text: str) -> int:
    """``2h`` / ``30m`` / ``90s`` / ``1d`` ago, or an ISO 8601 time → epoch nanoseconds."""
    try:
        ago_s = duration_s(text)
    except ValueError:
        pass
    else:
        if not ago_s * 1e9 <= time.time_ns():  # also catches inf (a 400-digit number)
            raise ConfigError(f"--since {text}: reaches back before 1970; give a shorter duration or a time")
        return time.time_ns() - int(ago_s * 1e9)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since: not a time or a duration like 2h: {text!r}") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


class ReplaySource(Source):
    """Dead-letter records as a finite source; settling removes the replayed records."""

    name = "replay"

    def __init__(
        self, dead: DeadLetterStore, records: Sequence[Record], sealer: Sealer | None = None
    ) -> None:
        self._dead = dead
        self._pending = [(r, r.delivery(sealer)) for r in records]
        #: Records whose sealed original could not be opened (they replay masked), with why.
        self.masked = [why for r in records if (why := r.original(sealer)[1]) is not None]
        self._record_of = {(d.stream, d.entry_id): r.id for r, d in self._pending}
        self.replayed: list[str] = []
        self.failed_again: list[DeadLetter] = []

    async def read(self, max_count: int, block_ms: int) -> list[Delivery]:
        batch, self._pending = self._pending[:max_count], self._pending[max_count:]
        return [d for _, d in batch]

    async def settle(self, done: Sequence[Delivery], dead: Sequence[DeadLetter]) -> None:
        await self._dead.replace(dead, [self._record_of[(d.stream, d.entry_id)] for d in done])
        failed = {(r.stream, r.entry_id) for r in dead}
        self.replayed += [
            self._record_of[(d.stream, d.entry_id)] for d in done if (d.stream, d.entry_id) not in failed
        ]
        self.failed_again += list(dead)

    @property
    def exhausted(self) -> bool:
        return not self._pending

    async def status(self) -> StoreStatus:
        row = StreamStatus("replay", "replay", True, len(self._pending), 0, None, 1)
        return StoreStatus([row], await self._dead.count())

    async def open_dead_letters(self) -> DeadLetterStore:
        """The records being replayed (the store's own: closed by whoever opened it)."""
        return self._dead


def print_records(records: Sequence[Record], out: TextIO) -> None:
    """A readable table of records."""
    if not records:
        print("no dead-letter records", file=out)
        return
    print(
        f"{'id':<18} {'at (UTC)':<20} {'reason':<14} {'stream/entry':<40} {'rule/action':<36} error", file=out
    )
    for r in records:
        f = r.fields
        at = datetime.fromtimestamp(r.at_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") if r.at_ns else "-"
        where = f"{f.get('stream', '')} {f.get('entry_id', '')}"
        what = f"{f.get('rule', '')} {f.get('action', '')}".strip() or "-"
        status = f" [{f['status']}]" if f.get("status") else ""
        error = (redact_text(f.get("error", "")) + status)[:80]  # a record of an older writer too
        print(f"{r.id:<18} {at:<20} {f.get('reason', ''):<14} {where:<40} {what:<36} {error}", file=out)


def _shown_event(text: str) -> Any:
    """A record's event as ``dlq show`` prints it: masked again (a record an older version wrote
    may hold a malformed entry's secrets as it came)."""
    try:
        return redact(json.loads(text))
    except (ValueError, RecursionError):
        return redact_text(text)


def print_record(record: Record, out: TextIO) -> None:
    fields = {k: redact_text(v) for k, v in record.fields.items()}  # older records: the second net
    event = record.fields.get("event") or "{}"
    fields.pop("event", None)
    if fields.pop("sealed", None):  # ciphertext: shown as what it is, not as a wall of base64
        fields["sealed"] = "(the event as received, encrypted: used by dlq replay)"
    print(
        json.dumps({"id": record.id, **fields, "event": _shown_event(event)}, indent=2, sort_keys=True),
        file=out,
    )
