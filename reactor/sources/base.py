"""The event-store interface: what the worker needs from an event store, and nothing of its types.

One class per store (``redis_streams``, ``nats_jetstream``, ``rabbitmq``, ``memory``), each in one
file, behind ``Source`` with three faces: consuming (``read``, ``settle``, ``maintain``, and what
the order gate asks: ``foreign_pending``, ``read_entries``, ``still_pending``), its status
(``status``: ``StoreStatus`` of ``StreamStatus`` rows) and its dead letters
(``open_dead_letters``: a ``DeadLetterStore`` of ``Record`` rows; ``DeadLetter`` is a record
being written).

A source delivers raw entries (``Delivery``) in batches; the worker settles each one exactly
once through ``settle``: acknowledged, after its dead-letter record (if any) is stored. Nothing
is acknowledged before its outcome is settled, so a crash before ``settle`` means redelivery.
"""

from __future__ import annotations

import base64
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from reactor.errors import SourceError
from reactor.events.model import RAW_B64
from reactor.redact import redact, redact_text, utf8_safe
from reactor.secrets import Sealer, SealError


def delivery_key(stream: str, entry_id: str) -> str:
    """The idempotency key of an entry's completed steps in the state store: ``stream/entry_id``.

    Every source makes it the same for every delivery of one message (redeliveries, restarts,
    other processes) and different between messages: Redis's entry id, JetStream's stream
    sequence, and for RabbitMQ (which has no message id) a hash of the routing key and body."""
    return f"{stream}/{entry_id}"


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id ``ms-seq`` as a sortable pair (anything else sorts first, in arrival order)."""
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


@dataclass(frozen=True, slots=True)
class Delivery:
    """One entry as read: where it came from and its payload (fields or a message body)."""

    stream: str
    entry_id: str
    payload: Mapping[str, Any] | bytes
    deliveries: int = 1

    @property
    def key(self) -> str:
        """The idempotency key of this entry's steps (see ``delivery_key``)."""
        return delivery_key(self.stream, self.entry_id)


@dataclass
class StreamStatus:
    """One stream (subject, queue) as the store tells it: what ``reactor status`` prints a row of
    and the daemon's lag and pending gauges show."""

    stream: str
    group: str
    exists: bool
    lag: int | None = None  # entries not yet delivered to the group (None: the store does not say)
    pending: int = 0  # delivered, not acknowledged
    oldest_pending_s: float | None = None
    consumers: int | None = 0  # None: the event store does not say
    pattern: str | None = None  # the ``redis.streams`` glob pattern that found the stream


@dataclass
class StoreStatus:
    """A store's status face: its streams, and how many dead-letter records it keeps."""

    streams: list[StreamStatus] = field(default_factory=list)
    dead_letters: int = 0


class Source(ABC):
    """An event store the worker consumes from."""

    #: The backend's name, recorded as ``Event.source``.
    name: str = "source"

    #: The client library's exceptions that mean the event store failed (a lost connection, a
    #: closed channel, a refused command): the source raises them as ``SourceError`` and the
    #: worker waits them out with backoff (also one that slipped through untranslated). Anything
    #: else escaping a source is a bug, and stops the daemon with a non-zero exit.
    recoverable: ClassVar[tuple[type[Exception], ...]] = ()

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect and prepare (consumer groups, queues)."""

    @abstractmethod
    async def read(self, max_count: int, block_ms: int) -> list[Delivery]:
        """Up to ``max_count`` entries, waiting at most ``block_ms`` for the first one."""

    @abstractmethod
    async def settle(self, done: Sequence[Delivery], dead: Sequence[DeadLetter]) -> None:
        """Store ``dead`` in the dead-letter stream, then acknowledge ``done`` (which includes them)."""

    @property
    def exhausted(self) -> bool:
        """True when no entry will ever come again (a finite source that has been read to its end)."""
        return False

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def ready(self) -> bool:
        """Whether the source can talk to its event store right now."""
        return True

    #: How often ``maintain`` runs.
    maintain_interval_s: float = 5.0

    async def maintain(self) -> list[Delivery]:
        """Periodic upkeep: return entries reclaimed from consumers that died."""
        return []

    def notices(self) -> list[tuple[str, str, dict[str, Any]]]:
        """What the source has to tell the operator since it was last asked (level ``info`` or
        ``warning``, log event, fields):
        streams it joined, bounds it reached. Drained by the worker after each ``maintain``."""
        return []

    def maybe_acted_on(self, delivery: Delivery) -> bool:
        """Whether this delivery may have been acted on before, by this process or another (its
        completed steps are then looked up, just before it runs): a redelivery, and for a source
        whose broker hands what a lost connection held to other consumers, what was held then."""
        return delivery.deliveries > 1

    async def foreign_pending(self, deliveries: Sequence[Delivery]) -> dict[str, list[str]]:
        """The entries held by *other* consumers and not settled, up to the batch's last entry:
        per stream as the store lists them (a Redis stream, the JetStream stream), their entry
        ids. The order gate reads and decodes them (``read_entries``) to find each delivery's
        earlier entries of the same device. A source with one consumer has none."""
        return {}

    async def read_entries(self, stream: str, entry_ids: Sequence[str]) -> dict[str, Delivery | None]:
        """The entries named by ``foreign_pending``, as deliveries (their stream is the one a
        delivery of them would have: the Redis stream, the NATS subject); None for one gone from
        the store (trimmed, aged out, deleted): it holds nothing up."""
        return dict.fromkeys(entry_ids)

    async def still_pending(self, stream: str, entry_ids: set[str]) -> set[str]:
        """Which of ``entry_ids`` are not settled yet."""
        return set()

    async def release(self, deliveries: Sequence[Delivery]) -> None:  # noqa: B027 - optional
        """Give unsettled entries back for redelivery now (on stop); by default they come back anyway."""

    async def status(self) -> StoreStatus:
        """The status face: per stream the lag and pending entries, and the dead-letter count.
        Asked of a started source (the daemon's gauges) or of one never started (``reactor
        status``), which then opens and closes a connection of its own. Every event store says;
        a source that is not one (a generator in a benchmark) has no streams to tell."""
        return StoreStatus()

    async def open_dead_letters(self) -> DeadLetterStore:
        """The dead-letter face: the records this store keeps, on a connection of their own
        (``close()`` it when done). Every event store has one."""
        raise SourceError(f"{self.name}: keeps no dead-letter records")


# ---- dead letters: what could not succeed, with the reason, secrets masked; each store's records
# as stored (``Record``) and the face through which ``reactor dlq`` reads and edits them
# (``DeadLetterStore``).


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One event that ended in the dead-letter stream, and why.

    ``reason`` is a fixed word (``malformed``, ``action_failed``, ``ambiguous`` for a call that may
    have reached the server and must not be sent twice, ``poison``, ``internal_error`` for a bug
    in the reactor itself); ``error`` the message; ``rule`` / ``action`` / ``status`` /
    ``attempts`` say where and how it failed.
    """

    stream: str
    entry_id: str
    reason: str
    error: str
    event: Mapping[str, Any]
    rule: str = ""
    action: str = ""
    status: int | None = None
    attempts: int = 0
    at_ns: int = field(default_factory=time.time_ns)
    #: Values known to be secrets (the event's secret fields), masked wherever they appear.
    secrets: frozenset[str] = frozenset()
    #: The event as received, sealed (``reactor.secrets.Sealer``): what ``dlq replay`` sends
    #: again, secrets included, while ``event`` (what ``dlq show`` prints) is masked.
    sealed: str = ""

    def to_fields(self) -> dict[str, str]:
        """The record as stream fields, every value masked by the redaction layer.

        Never raises, whatever the event holds: every value is text encodable as UTF-8, and an
        event that cannot be serialised is recorded as why not.
        """
        fields = {
            "stream": utf8_safe(self.stream),
            "entry_id": utf8_safe(self.entry_id),
            "reason": self.reason,
            "error": redact_text(self.error, self.secrets),
            "rule": utf8_safe(self.rule),
            "action": utf8_safe(self.action),
            "status": "" if self.status is None else str(self.status),
            "attempts": str(self.attempts),
            "at_ns": str(self.at_ns),
            "event": self._event_json(),
        }
        if self.sealed:
            fields["sealed"] = self.sealed
        return fields

    def _event_json(self) -> str:
        try:
            return json.dumps(redact(dict(self.event), secrets=self.secrets), sort_keys=True, default=str)
        except (ValueError, TypeError, RecursionError) as exc:  # keys that do not sort, a cycle
            return json.dumps({"unserialisable": f"{type(exc).__name__}: {exc}"})


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
