"""NATS JetStream, everything about it in one file, by face: consuming, status, dead letters.

Consuming (``NatsJetStreamSource``): a durable pull consumer on SuperMQ's ``events`` stream;
explicit acks after the outcome is settled; what is not acked comes back after ``ack_wait_s`` (a
crashed process's work). Payloads are protobuf-wrapped JSON (or bare JSON): the decoder handles
both. NATS errors are translated to ``SourceError``.

A message's entry id is its stream sequence: the same on every delivery of it, distinct between
messages of the stream (a stream deleted and made again starts over at 1: clear the state store
of completed steps then, or keep ``state.retention_s`` shorter than the gap). While a message is
held (read, not settled) ``maintain`` tells JetStream it is in progress every quarter of
``ack_wait_s``, so a slow or queued message is not redelivered to another process while this one
still acts on it (that process would apply it a second time); a dead process's messages come
back after ``ack_wait_s``. A server killed and restarted forgets acks and delivery counts it had
not synced to disk: a message stored more than a second before its "first" delivery is taken as
a redelivery, so that its completed steps are looked up rather than applied again.

Per-device order: JetStream hands a process that took over from a killed one (or a peer) the
newest messages at once, and the killed one's held messages only after ``ack_wait``. A device's
message waits (the order gate, ``delivery/order_gate``, asks ``foreign_pending`` and
``read_entries``) while an earlier message of its device (same subject) above the consumer's ack
floor was delivered elsewhere and not acked: it runs once that one is
redelivered here (then in order, in its lane) or the ack floor passes it. Without that wait, an
earlier message applied and not yet recorded by the killed process would be applied again over
the later one's effect. JetStream tells no per-message ack state, only the floor: messages
another process acked above the floor count as pending until the floor passes them (at most
``ack_wait`` after a kill, for the devices that have one in the gap). At most ``_MAX_SCAN``
messages below a batch are listed; the gate reads those not held here from the stream once
(``get_msg``) and remembers their devices. While every message from the
floor up to a batch was held or acked here (one process), no request is made at all; a stream
with subjects the consumer does not take makes one consumer-info request per batch.

Memory: messages read and not settled hold at most ``max_unsettled_bytes`` (``ByteBudget``): a
fetch takes what fits at the largest message size seen lately.

Status (``NatsJetStreamSource.status``): the durable consumer's messages not yet delivered and
unacked, and the dead-letter stream's length.

Dead letters (``NatsDeadLetters``): records published to ``nats.dlq_subject``, kept in the
JetStream stream ``nats.dlq_stream``; the same ``reactor dlq`` commands as on Redis; a record's
id is its stream sequence number.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from reactor.errors import SourceError
from reactor.redact import shown_url
from reactor.settings import NatsSettings
from reactor.sources.base import (
    DeadLetter,
    DeadLetterStore,
    Delivery,
    Record,
    Source,
    StoreStatus,
    StreamStatus,
)
from reactor.sources.budget import ByteBudget

_DAY_S = 86_400
_FIRST_CONNECT_S = 5.0
#: A message first delivered longer than this after it was stored may have been acted on already.
_FRESH_S = 1.0
#: How many messages below a batch's newest are looked at for a device's earlier unsettled ones.
_MAX_SCAN = 10_000
#: At most this many stream sequences acked here above the ack floor remembered.
_MAX_KNOWN = 100_000


class NatsJetStreamSource(Source):
    name = "nats"
    recoverable = (NatsError, OSError)

    def __init__(self, settings: NatsSettings) -> None:
        self._s = settings
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        self._messages: dict[str, Any] = {}  # held (read, not settled), by entry id
        self._touched: dict[str, float] = {}  # when JetStream last heard of each held one
        self._held_at_disconnect: set[str] = set()  # may be redelivered elsewhere meanwhile
        self._acked: set[int] = set()  # stream sequences acked here, above the ack floor last seen
        self._floor = 0  # the consumer's ack floor (stream sequence) last seen
        self._mine_upto = 0  # every sequence in (floor, this] is held or was acked here
        self._budget = ByteBudget(settings.max_unsettled_bytes)  # what the held messages take
        self.maintain_interval_s = settings.ack_wait_s / 4

    async def start(self) -> None:
        try:
            self._nc = await self._connect()
            self._js = self._nc.jetstream()
            await self._ensure_streams()
            config = ConsumerConfig(
                durable_name=self._s.durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self._s.ack_wait_s,
                deliver_policy=DeliverPolicy.ALL,
                filter_subject=self._s.filter_subject,
                max_deliver=-1,
            )
            self._sub = await self._js.pull_subscribe(
                self._s.filter_subject, durable=self._s.durable, stream=self._s.stream, config=config
            )
        except self.recoverable as exc:
            raise SourceError(f"nats {shown_url(self._s.url)}: {exc}") from exc

    async def _connect(self) -> Any:
        """A connection that reconnects for ever once made; the first one is given
        ``_FIRST_CONNECT_S`` (nats-py would try for ever, deaf to a stop, printing tracebacks)."""
        errors: list[str] = []

        async def noted(exc: Exception) -> None:  # instead of nats-py's traceback on stderr
            errors.append(str(exc) or type(exc).__name__)

        connecting = nats.connect(
            self._s.url,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=noted,
            disconnected_cb=self._disconnected,
        )
        try:
            return await asyncio.wait_for(connecting, _FIRST_CONNECT_S)
        except TimeoutError:
            last = errors[-1] if errors else "no answer"
            raise SourceError(
                f"nats {shown_url(self._s.url)}: not reachable within {_FIRST_CONNECT_S:g} s ({last})"
            ) from None

    async def _ensure_streams(self) -> None:
        wanted = [(self._s.stream, self._s.subjects), (self._s.dlq_stream, [self._s.dlq_subject])]
        for name, subjects in wanted:
            try:
                await self._js.stream_info(name)
            except NotFoundError:
                if not self._s.create_stream and name == self._s.stream:
                    raise SourceError(f"nats: stream {name!r} does not exist") from None
                await self._js.add_stream(
                    StreamConfig(  # SuperMQ's settings (supermq-facts.md §1.2)
                        name=name,
                        subjects=subjects,
                        retention=RetentionPolicy.LIMITS,
                        max_age=_DAY_S if name == self._s.stream else 30 * _DAY_S,
                        max_msg_size=1 << 20,
                        discard=DiscardPolicy.OLD,
                        storage=StorageType.FILE,
                    )
                )

    async def read(self, max_count: int, block_ms: int) -> list[Delivery]:
        """What fits in ``max_unsettled_bytes`` (at the largest message size seen lately), once
        what is held leaves room: a read waits for a settle up to ``block_ms`` when none fits."""
        count = await self._budget.room(max_count, block_ms)
        if not count:
            return []
        try:
            messages = await self._sub.fetch(batch=count, timeout=max(block_ms, 1) / 1000)
        except (NatsTimeout, TimeoutError):  # nothing arrived in time (either library's timeout)
            return []
        except self.recoverable as exc:
            raise SourceError(f"nats fetch: {exc}") from exc
        out = []
        now, wall = time.monotonic(), time.time()
        for msg in messages:
            meta = msg.metadata
            entry_id = str(meta.sequence.stream)
            self._messages[entry_id] = msg  # a redelivery of one held here: ack the newest
            self._touched[entry_id] = now
            out.append(Delivery(msg.subject, entry_id, bytes(msg.data), _deliveries(meta, wall)))
        self._budget.hold((d.entry_id, len(d.payload)) for d in out if isinstance(d.payload, bytes))
        return out

    async def settle(self, done: Sequence[Delivery], dead: Sequence[DeadLetter]) -> None:
        try:
            for record in dead:
                await self._js.publish(self._s.dlq_subject, json.dumps(record.to_fields()).encode())
            for delivery in done:
                msg = self._messages.get(delivery.entry_id)
                if msg is not None:
                    await msg.ack_sync()  # held until acked: a settle retried after an outage acks again
                    self._forget(delivery.entry_id)
                    self._note_acked(int(delivery.entry_id))
        except self.recoverable as exc:
            raise SourceError(f"nats settle: {exc}") from exc

    async def maintain(self) -> list[Delivery]:
        """Tell JetStream the messages held longer than ``maintain_interval_s`` are in progress
        (resetting their ``ack_wait``); nothing is reclaimed here, JetStream redelivers itself."""
        due = time.monotonic() - self.maintain_interval_s
        try:
            for entry_id, touched in list(self._touched.items()):
                msg = self._messages.get(entry_id)
                if msg is not None and touched <= due:
                    await msg.in_progress()
                    self._touched[entry_id] = time.monotonic()
        except self.recoverable as exc:
            raise SourceError(f"nats in-progress: {exc}") from exc
        return []

    def _forget(self, entry_id: str) -> Any:
        self._budget.release((entry_id,))
        self._touched.pop(entry_id, None)
        self._held_at_disconnect.discard(entry_id)
        return self._messages.pop(entry_id, None)

    async def _disconnected(self) -> None:
        """What we hold now may be redelivered to another process before we act on it (the
        server, restarted, forgot our in-progress acks): look its completed steps up first."""
        self._held_at_disconnect.update(self._messages)

    def maybe_acted_on(self, delivery: Delivery) -> bool:
        return delivery.deliveries > 1 or delivery.entry_id in self._held_at_disconnect

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            msg = self._forget(delivery.entry_id)
            if msg is not None:
                try:
                    await msg.nak()
                except self.recoverable:
                    continue  # it comes back after ack_wait anyway

    async def ready(self) -> bool:
        return bool(self._nc is not None and self._nc.is_connected)

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(NatsError, OSError):
                await self._nc.close()
            self._nc = None

    # ---- what the order gate asks: messages other consumers hold -----------------------------

    def _note_acked(self, seq: int) -> None:
        if seq > self._mine_upto:
            if len(self._acked) >= _MAX_KNOWN:  # forgotten ones only wait for the floor: order holds
                self._acked.clear()
            self._acked.add(seq)

    async def _ack_floor(self) -> tuple[int, int]:
        """The consumer's ack floor (every message at or below it is acked) and how many of its
        delivered messages are unacked (ours among them)."""
        try:
            info = await self._js.consumer_info(self._s.stream, self._s.durable)
        except self.recoverable as exc:
            raise SourceError(f"nats consumer info: {exc}") from exc
        floor = int(info.ack_floor.stream_seq or 0)
        if floor > self._floor:
            self._floor = floor
            self._mine_upto = max(self._mine_upto, floor)
            self._acked = {seq for seq in self._acked if seq > self._mine_upto}
        return floor, int(info.num_ack_pending or 0)

    def _all_mine_below(self, top: int) -> bool:
        """Whether every message from the floor up to ``top`` is held or was acked here (no
        other process had any): the steady state of one process, told without asking the server."""
        upto = self._mine_upto
        while upto < top and (upto + 1 in self._acked or str(upto + 1) in self._messages):
            upto += 1
            self._acked.discard(upto)  # covered by _mine_upto from here
        self._mine_upto = upto
        return upto >= top

    async def foreign_pending(self, deliveries: Sequence[Delivery]) -> dict[str, list[str]]:
        """The messages below the batch's newest, above the ack floor, that are neither held nor
        acked here (held elsewhere, by a live or a killed process), at most ``_MAX_SCAN``."""
        top = max(int(d.entry_id) for d in deliveries)
        if self._all_mine_below(top):
            return {}  # one round trip saved per batch: nothing below was anyone else's
        _, unacked = await self._ack_floor()
        if unacked <= len(self._messages) or self._all_mine_below(top):
            return {}  # nobody else holds anything: nothing to wait for
        gap = [
            str(seq)
            for seq in range(max(self._mine_upto + 1, top - _MAX_SCAN), top)
            if seq not in self._acked and str(seq) not in self._messages
        ]
        return {self._s.stream: gap} if gap else {}

    async def read_entries(self, stream: str, entry_ids: Sequence[str]) -> dict[str, Delivery | None]:
        """Each message read from the stream (``get_msg``, a hundred at a time), as a delivery on
        its subject; None for one gone from the stream (aged out or deleted)."""
        out: dict[str, Delivery | None] = {}
        for start in range(0, len(entry_ids), 100):
            chunk = entry_ids[start : start + 100]
            replies = await asyncio.gather(
                *(self._js.get_msg(stream, int(seq)) for seq in chunk), return_exceptions=True
            )
            for seq, reply in zip(chunk, replies, strict=True):
                if isinstance(reply, NotFoundError):
                    out[seq] = None
                elif isinstance(reply, self.recoverable):
                    raise SourceError(f"nats get_msg {seq}: {reply}") from reply
                elif isinstance(reply, BaseException):
                    raise reply
                else:
                    out[seq] = Delivery(str(reply.subject or ""), seq, bytes(reply.data or b""))
        return out

    async def still_pending(self, stream: str, entry_ids: set[str]) -> set[str]:
        """Those above the ack floor not acked here (the floor is all JetStream tells)."""
        if not entry_ids:
            return set()
        floor, _ = await self._ack_floor()
        return {
            i
            for i in entry_ids
            if int(i) > floor
            and int(i) not in self._acked
            and (int(i) > self._mine_upto or i in self._messages)
        }

    # ---- status ----------------------------------------------------------------------------

    async def status(self) -> StoreStatus:
        """The durable consumer's messages not yet delivered and unacked, and the DLQ stream's
        length: on this source's connection, or one of its own when it was not started."""
        if self._js is not None:
            return await self._status(self._js)
        dead = await NatsDeadLetters.connect(self._s)
        try:
            return await self._status(dead.jetstream)
        finally:
            await dead.close()

    async def _status(self, js: Any) -> StoreStatus:
        s = self._s
        status = StoreStatus()
        try:
            try:
                info = await js.consumer_info(s.stream, s.durable)
            except NotFoundError:
                status.streams.append(StreamStatus(s.stream, s.durable, exists=False))
            else:
                pending = int(info.num_ack_pending)
                status.streams.append(
                    StreamStatus(s.stream, s.durable, True, int(info.num_pending), pending, None, None)
                )
            with contextlib.suppress(NotFoundError):  # no dead-letter stream: nothing dead-lettered
                status.dead_letters = int((await js.stream_info(s.dlq_stream)).state.messages)
        except self.recoverable as exc:
            raise SourceError(f"nats {shown_url(s.url)}: {exc}") from exc
        return status

    # ---- dead letters ----------------------------------------------------------------------

    async def open_dead_letters(self) -> DeadLetterStore:
        return await NatsDeadLetters.connect(self._s)


# ---- consuming: delivery counts ------------------------------------------------------------------


def _deliveries(meta: Any, now: float) -> int:
    """The delivery count to act on: JetStream's, except that a "first" delivery of a message
    stored more than ``_FRESH_S`` ago counts as a redelivery (its completed steps are looked up).

    A JetStream server killed and started again forgets the acks and delivery counts it had not
    yet synced to disk (acks it had confirmed, too): a message acted on and acked comes back
    delivered "once". A fresh message (the steady state) is not looked up; a backlog is."""
    count = int(meta.num_delivered)
    if count == 1 and now - meta.timestamp.timestamp() > _FRESH_S:
        return 2
    return count


# ---- dead letters ------------------------------------------------------------------------------


class NatsDeadLetters(DeadLetterStore):
    """The JetStream stream ``nats.dlq_stream``, a record's id its stream sequence:
    ``await NatsDeadLetters.connect(settings)``; ``close()`` when done."""

    def __init__(self, settings: NatsSettings, nc: NatsClient) -> None:
        self._s = settings
        self._nc = nc
        self._js = nc.jetstream()
        self.where = f"JetStream stream {settings.dlq_stream}"

    @property
    def jetstream(self) -> JetStreamContext:
        """The connection's JetStream context (``reactor status`` asks it about the consumer)."""
        return self._js

    @classmethod
    async def connect(cls, settings: NatsSettings) -> NatsDeadLetters:
        try:
            nc = await nats.connect(settings.url, connect_timeout=5, max_reconnect_attempts=0)
        except (NatsError, OSError) as exc:
            raise SourceError(f"nats {shown_url(settings.url)}: {exc}") from exc
        return cls(settings, nc)

    async def _get(self, seq: int) -> Record | None:
        try:
            msg = await self._js.get_msg(self._s.dlq_stream, seq)
        except NotFoundError:
            return None  # deleted, or never there
        return Record(str(seq), {str(k): str(v) for k, v in json.loads(msg.data or b"{}").items()})

    async def _fetch(self, ids: Sequence[str], limit: int | None) -> list[Record]:
        try:
            if ids:
                found = [await self._get(int(i)) for i in ids if i.isdigit()]
                return [r for r in found if r is not None]
            state = (await self._js.stream_info(self._s.dlq_stream)).state
            records: list[Record] = []
            # Sequences start at 1: an empty stream reports first_seq 0, and JetStream answers a
            # request for message 0 with 400.
            for seq in range(state.last_seq, max(state.first_seq, 1) - 1, -1):
                if limit is not None and len(records) >= limit:
                    break
                record = await self._get(seq)
                if record is not None:
                    records.append(record)
            return records
        except NotFoundError:
            return []  # no dead-letter stream yet: nothing was dead-lettered
        except (NatsError, OSError, ValueError) as exc:
            raise SourceError(f"{self.where}: {exc}") from exc

    async def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        for record_id in ids:
            if not record_id.isdigit():
                continue
            try:
                removed += bool(await self._js.delete_msg(self._s.dlq_stream, int(record_id)))
            except NotFoundError:
                continue
            except (NatsError, OSError) as exc:
                raise SourceError(f"{self.where}: {exc}") from exc
        return removed

    async def count(self) -> int:
        try:
            return int((await self._js.stream_info(self._s.dlq_stream)).state.messages)
        except NotFoundError:
            return 0  # no dead-letter stream yet: nothing was dead-lettered
        except (NatsError, OSError) as exc:
            raise SourceError(f"{self.where}: {exc}") from exc

    async def purge(self) -> int:
        count = await self.count()
        try:
            await self._js.purge_stream(self._s.dlq_stream)
        except NotFoundError:
            return 0
        except (NatsError, OSError) as exc:
            raise SourceError(f"{self.where}: {exc}") from exc
        return count

    async def replace(self, add: Sequence[DeadLetter], remove: Sequence[str]) -> None:
        """New records first, then the deletions: JetStream has no transaction, and a crash in
        between leaves a replayed record twice rather than losing one."""
        try:
            for record in add:
                await self._js.publish(self._s.dlq_subject, json.dumps(record.to_fields()).encode())
        except (NatsError, OSError) as exc:
            raise SourceError(f"replay: {exc}") from exc
        await self.delete(remove)

    async def close(self) -> None:
        await self._nc.close()
