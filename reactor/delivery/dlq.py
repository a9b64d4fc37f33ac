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

import base64
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from reactor.durations import duration_s
from reactor.errors import ConfigError, SourceError
from reactor.events.model import RAW_B64
from reactor.redact import redact, redact_text
from reactor.secrets import Sealer, SealError
from reactor.sources.base import Delivery, Source
from reactor.sources.deadletter import DeadLetter


@dataclass(frozen=True)
class Record:
    """One dead-letter entry as stored."""

    id: str
    fields: dict[str, str]

    @property
    def at_ns(self) -> int:
        return int(self.fields.get("at_ns") or 0)

    def original(self, sealer: Sealer | None) -> tuple[dict[str, Any], str | None]:
        """The event as received (from ``sealed``), else the masked one and why."""
        sealed = self.fields.get("sealed")
        why: str | None
        if sealed and sealer is not None:
            try:
                opened = sealer.open_json(sealed)
            except (SealError, ValueError) as exc:
                why = f"record {self.id}: {exc}: replaying its masked event"
            else:
                if isinstance(opened, dict):
                    return opened, None
                why = f"record {self.id}: its sealed event is not an object: replaying its masked event"
        else:
            why = None if not sealed else f"record {self.id}: no key to open it: replaying its masked event"
        return json.loads(self.fields.get("event") or "{}"), why

    def delivery(self, sealer: Sealer | None = None) -> Delivery:
        """The original event as a redelivery of its original entry."""
        payload, _ = self.original(sealer)
        body: dict[str, Any] | bytes = payload
        binary = payload.pop(RAW_B64, None)
        if isinstance(binary, dict):  # fields that were not UTF-8: their bytes again
            payload.update({str(k): base64.b64decode(str(v)) for k, v in binary.items()})
        if set(payload) == {"body"}:
            body = str(payload["body"]).encode()
        elif set(payload) == {"body_b64"}:
            body = base64.b64decode(payload["body_b64"])
        return Delivery(
            self.fields.get("stream", ""),
            self.fields.get("entry_id", ""),
            body,
            deliveries=2,  # a redelivery (completed steps skipped); never poison: replaying is deliberate
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


class DeadLetterStore(ABC):
    """Where one backend keeps dead-letter records: list, show, delete, purge, and the replay's
    swap of replayed records for the ones that failed again."""

    #: The stream, subject or queue, for messages.
    where: str

    async def records(
        self,
        *,
        ids: Sequence[str] = (),
        rule: str | None = None,
        since_ns: int | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Records, newest first, filtered by id, rule and time."""
        records = await self._fetch(ids, limit)
        if rule is not None:
            records = [r for r in records if r.fields.get("rule") == rule]
        if since_ns is not None:
            records = [r for r in records if r.at_ns >= since_ns]
        return records

    @abstractmethod
    async def _fetch(self, ids: Sequence[str], limit: int | None) -> list[Record]:
        """The records with these ids, or the newest ``limit`` (all when None), newest first."""

    @abstractmethod
    async def count(self) -> int:
        """How many records are kept."""

    @abstractmethod
    async def delete(self, ids: Sequence[str]) -> int: ...

    @abstractmethod
    async def purge(self) -> int: ...

    @abstractmethod
    async def replace(self, add: Sequence[DeadLetter], remove: Sequence[str]) -> None:
        """Write ``add`` and delete the records ``remove`` (after a replay)."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Release the connection."""


class DeadLetters(DeadLetterStore):
    """The dead-letter stream of one Redis."""

    def __init__(self, client: aioredis.Redis, stream: str) -> None:
        self.client = client
        self.stream = self.where = stream

    async def close(self) -> None:
        await self.client.aclose()

    async def _fetch(self, ids: Sequence[str], limit: int | None) -> list[Record]:
        raw: list[Any] = []
        try:
            if ids:
                for record_id in ids:
                    raw += await self.client.xrange(self.stream, record_id, record_id) or []
            else:
                raw = await self.client.xrevrange(self.stream, count=limit) or []
        except RedisError as exc:
            raise SourceError(f"dead-letter stream {self.stream}: {exc}") from exc
        return [Record(str(i), dict(f)) for i, f in raw]

    async def count(self) -> int:
        try:
            return int(await self.client.xlen(self.stream))
        except RedisError as exc:
            raise SourceError(f"dead-letter stream {self.stream}: {exc}") from exc

    async def delete(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(await self.client.xdel(self.stream, *ids))

    async def purge(self) -> int:
        count = await self.count()
        await self.client.delete(self.stream)
        return count

    async def replace(self, add: Sequence[DeadLetter], remove: Sequence[str]) -> None:
        """In one transaction: a replay never loses a record nor keeps a replayed one."""
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                for record in add:
                    fields: dict[Any, Any] = record.to_fields()
                    pipe.xadd(self.stream, fields)
                if remove:
                    pipe.xdel(self.stream, *remove)
                await pipe.execute()
        except RedisError as exc:
            raise SourceError(f"replay: {exc}") from exc


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
