"""RabbitMQ, everything about it in one file, by face: consuming, status, dead letters.

Consuming (``RabbitMQSource``): SuperMQ's durable topic exchange ``events``; a durable queue of
ours bound to the configured routing keys; manual acks after the outcome is settled, prefetch
bounded; what is not acked goes back to the queue when the channel closes (a crash), marked
redelivered. AMQP errors are translated to ``SourceError``. AMQP tells nothing of what other
consumers hold, so the order gate is told nothing (``foreign_pending`` lists none): per-device
order holds within one process (README, "Delivery contract").

A message's entry id is a hash of its routing key and body (``body-<32 hex>``): AMQP gives a
message no id of its own and SuperMQ sets no ``message_id``, and the id must be the same on every
delivery of the message (after a crash, on another process) and differ between messages, as it
keys the completed steps in the state store. SuperMQ's body carries ``occurred_at`` in
nanoseconds, so two equal bodies on one routing key are one event published twice: they share
their steps, and one settle acks every copy held. Within a process, messages run in arrival order
(the id does not sort).

Memory: messages delivered and not settled hold at most ``max_unsettled_bytes``. On a classic
queue the channel's prefetch limit (channel-wide, which the broker applies at once) is kept at
what is held plus what fits at the largest message size seen lately (one message before any is
seen), at most ``prefetch``; when the budget is full the broker sends nothing more until a settle
makes room. A quorum queue refuses a channel-wide limit: there ``prefetch`` messages bound it.

Delivery counts: a quorum queue (``queue_type = "quorum"``) counts a message's deliveries
(``x-delivery-count``), so one that killed the process ``max_deliveries`` times is dead-lettered
as poison before it runs again. A classic queue only says "redelivered" (counted as 2): there,
poison is never detected, and a publisher's own ``x-delivery-count`` header is not believed.

Status (``RabbitMQSource.status``): the queue's messages not yet delivered, those this process
holds unacked, its consumers, and the dead-letter queue's length.

Dead letters (``RabbitDeadLetters``): records kept in a durable queue of their own
(``rabbitmq.dlq_queue``), the same ``reactor dlq`` commands as on Redis and NATS. AMQP has no way
to read a queue without taking its messages, so a listing takes them with ``basic.get``
unacknowledged, on a channel of its own, and gives every one back by closing that channel: the
broker requeues them in their places (marked redelivered, which a dead-letter record does not
care about). A deletion acknowledges the chosen ones before the channel closes. Nothing else
consumes the dead-letter queue, so nothing is handed elsewhere meanwhile. A record's id is a
hash of its body (``dl-<20 hex>``): the same on every listing. A listing holds the records it
returns (at most ``limit``), not the whole queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import deque
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPException, ChannelInvalidStateError, ChannelNotFoundEntity

from reactor.errors import SourceError
from reactor.redact import shown_url
from reactor.settings import RabbitSettings
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

#: A prefetch change that gets no answer within this is given up (tried again on the next read).
_QOS_TIMEOUT_S = 5.0


class RabbitMQSource(Source):
    name = "rabbitmq"
    #: aiormq's ChannelInvalidStateError (a RuntimeError) is a closed channel, not a bug.
    recoverable = (AMQPException, ChannelInvalidStateError, OSError)

    def __init__(self, settings: RabbitSettings) -> None:
        self._s = settings
        self._conn: Any = None
        self._channel: Any = None
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._messages: dict[str, list[AbstractIncomingMessage]] = {}  # by entry id: copies held
        self._held_at_reconnect: set[str] = set()  # requeued by the broker: maybe taken elsewhere
        self._budget = ByteBudget(settings.max_unsettled_bytes)  # by message object, from arrival
        self._adaptive = settings.queue_type == "classic"  # the prefetch follows the budget
        self._prefetch = 0  # the channel's limit now

    async def start(self) -> None:
        try:
            self._conn = await aio_pika.connect_robust(self._s.url)
            self._conn.reconnect_callbacks.add(self._reconnected)
            self._channel = await self._conn.channel()
            await self._set_prefetch(1 if self._adaptive else self._s.prefetch)
            exchange = await self._channel.declare_exchange(
                self._s.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            arguments = {"x-queue-type": "quorum"} if self._s.queue_type == "quorum" else None
            queue = await self._channel.declare_queue(self._s.queue, durable=True, arguments=arguments)
            for key in self._s.routing_keys:
                await queue.bind(exchange, routing_key=key)
            await self._channel.declare_queue(self._s.dlq_queue, durable=True)
            await queue.consume(self._arrived, no_ack=False)
        except self.recoverable as exc:
            raise SourceError(f"rabbitmq {shown_url(self._s.url)}: {exc}") from exc

    async def _arrived(self, message: AbstractIncomingMessage) -> None:
        self._budget.hold(((id(message), len(message.body)),))
        self._inbox.put_nowait(message)

    async def _set_prefetch(self, count: int) -> None:
        if count != self._prefetch:
            async with asyncio.timeout(_QOS_TIMEOUT_S):  # TimeoutError: an OSError, recoverable
                await self._channel.set_qos(prefetch_count=count, global_=self._adaptive)
            self._prefetch = count

    async def _follow_budget(self) -> None:
        """The channel's limit: the messages held (unacked) and what fits beside them."""
        if self._adaptive and not self._channel.is_closed:  # a closed one waits for its restore
            wanted = len(self._budget) + self._budget.fits(self._s.prefetch)
            await self._set_prefetch(max(1, min(self._s.prefetch, wanted)))

    async def read(self, max_count: int, block_ms: int) -> list[Delivery]:
        batch: list[Delivery] = []
        try:
            await self._follow_budget()
        except self.recoverable as exc:
            raise SourceError(f"rabbitmq qos: {exc}") from exc
        try:
            first = await asyncio.wait_for(self._inbox.get(), max(block_ms, 1) / 1000)
        except TimeoutError:
            return batch
        batch.append(self._delivery(first))
        while len(batch) < max_count and not self._inbox.empty():
            batch.append(self._delivery(self._inbox.get_nowait()))
        return batch

    def _delivery(self, message: AbstractIncomingMessage) -> Delivery:
        routing_key = message.routing_key or ""
        body = bytes(message.body)
        entry_id = message_id(routing_key, body)
        self._messages.setdefault(entry_id, []).append(message)
        stream = routing_key.removeprefix("events.")
        return Delivery(stream, entry_id, body, self._deliveries(message))

    def _deliveries(self, message: AbstractIncomingMessage) -> int:
        """This delivery's number: the broker's count on a quorum queue, else 1 or 2 (redelivered)."""
        earlier = (message.headers or {}).get("x-delivery-count") if self._s.queue_type == "quorum" else None
        if isinstance(earlier, int) and not isinstance(earlier, bool) and earlier >= 0:
            return earlier + 1
        return 2 if message.redelivered else 1

    async def settle(self, done: Sequence[Delivery], dead: Sequence[DeadLetter]) -> None:
        """The dead-letter records, then the acks. A message whose ack fails came on a channel
        that is gone: the broker has put it back in the queue (it requeues whatever a closed
        channel left unacked), so it comes again as a redelivery; retrying the ack could only
        fail again, on every later settle too."""
        try:
            for record in dead:
                body = json.dumps(record.to_fields()).encode()
                await self._channel.default_exchange.publish(
                    aio_pika.Message(
                        body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, content_type="application/json"
                    ),
                    routing_key=self._s.dlq_queue,
                )
        except self.recoverable as exc:
            raise SourceError(f"rabbitmq settle: {exc}") from exc
        for delivery in done:
            self._held_at_reconnect.discard(delivery.entry_id)
            for message in self._messages.pop(delivery.entry_id, ()):
                self._budget.release((id(message),))
                with contextlib.suppress(*self.recoverable):
                    await message.ack()
        with contextlib.suppress(*self.recoverable):  # else on the next read
            await self._follow_budget()

    def _reconnected(self, *_: Any) -> None:
        """What the lost channel held went back to the queue, maybe to another process: look its
        completed steps up before acting on it here."""
        self._held_at_reconnect.update(self._messages)

    def maybe_acted_on(self, delivery: Delivery) -> bool:
        return delivery.deliveries > 1 or delivery.entry_id in self._held_at_reconnect

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            self._held_at_reconnect.discard(delivery.entry_id)
            for message in self._messages.pop(delivery.entry_id, ()):
                self._budget.release((id(message),))
                with contextlib.suppress(*self.recoverable):
                    await message.nack(requeue=True)

    async def ready(self) -> bool:
        return bool(self._conn is not None and not self._conn.is_closed)

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(AMQPException, OSError):
                await self._conn.close()
            self._conn = None

    # ---- status ----------------------------------------------------------------------------

    async def status(self) -> StoreStatus:
        """The queue's messages not yet delivered (ready in the queue, and those the broker sent
        here that were not read yet), those this process holds unacked (another process's are
        not told by AMQP), its consumers, and the dead-letter queue's length."""
        if self._conn is not None and not self._conn.is_closed:
            held = sum(len(copies) for copies in self._messages.values())
            return await self._status(self._conn, self._inbox.qsize(), held)
        try:
            connection = await aio_pika.connect(self._s.url, timeout=5)
        except self.recoverable as exc:
            raise SourceError(f"rabbitmq {shown_url(self._s.url)}: {exc}") from exc
        try:
            return await self._status(connection, 0, 0)
        finally:
            with contextlib.suppress(*self.recoverable):
                await connection.close()

    async def _status(self, connection: Any, unread: int, held: int) -> StoreStatus:
        status = StoreStatus()
        try:
            for name in (self._s.queue, self._s.dlq_queue):
                channel = await connection.channel()  # a failed passive declare closes its channel
                try:
                    result = (await channel.declare_queue(name, passive=True)).declaration_result
                except ChannelNotFoundEntity:
                    if name == self._s.queue:
                        status.streams.append(StreamStatus(name, name, exists=False))
                    continue
                await channel.close()
                count = int(result.message_count or 0)
                if name == self._s.dlq_queue:
                    status.dead_letters = count
                else:
                    row = StreamStatus(name, name, True, count + unread, held, None, result.consumer_count)
                    status.streams.append(row)
        except self.recoverable as exc:
            raise SourceError(f"rabbitmq {shown_url(self._s.url)}: {exc}") from exc
        return status

    # ---- dead letters ----------------------------------------------------------------------

    async def open_dead_letters(self) -> DeadLetterStore:
        return await RabbitDeadLetters.connect(self._s)


# ---- consuming: entry ids ------------------------------------------------------------------------


def message_id(routing_key: str, body: bytes) -> str:
    """A message's entry id: the same for every delivery of it, different between messages."""
    key = routing_key.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(len(key).to_bytes(4, "big") + key, digest_size=16)
    digest.update(body)
    return f"body-{digest.hexdigest()}"


# ---- dead letters ------------------------------------------------------------------------------


def record_id(body: bytes) -> str:
    """A record's id: a hash of its body, stable across listings."""
    return f"dl-{hashlib.blake2b(body, digest_size=10).hexdigest()}"


def _record(body: bytes) -> Record:
    try:
        fields = json.loads(body)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        fields = {"reason": "unreadable", "error": "not a dead-letter record of ours"}
    return Record(record_id(body), {str(k): str(v) for k, v in fields.items()})


class RabbitDeadLetters(DeadLetterStore):
    """The durable queue ``rabbitmq.dlq_queue``: ``await RabbitDeadLetters.connect(settings)``;
    ``close()`` when done."""

    def __init__(self, settings: RabbitSettings, connection: Any) -> None:
        self._s = settings
        self._conn = connection
        self.where = f"RabbitMQ queue {settings.dlq_queue}"

    @classmethod
    async def connect(cls, settings: RabbitSettings) -> RabbitDeadLetters:
        try:
            connection = await aio_pika.connect(settings.url, timeout=5)
        except (AMQPException, OSError) as exc:
            raise SourceError(f"rabbitmq {shown_url(settings.url)}: {exc}") from exc
        return cls(settings, connection)

    async def _walk(self, ids: Sequence[str], limit: int | None, ack: bool) -> list[Record]:
        """Every record, oldest first, taken and given back; those in ``ids`` kept (and with
        ``ack`` removed), else the newest ``limit``."""
        wanted = set(ids)
        kept: deque[Record] = deque(maxlen=None if wanted else limit)
        try:
            channel = await self._conn.channel()
            try:
                queue = await channel.declare_queue(self._s.dlq_queue, durable=True)
                while (message := await queue.get(no_ack=False, fail=False)) is not None:
                    record = _record(bytes(message.body))
                    if wanted and record.id not in wanted:
                        continue
                    kept.append(record)
                    if ack:
                        await message.ack()
            finally:
                await channel.close()  # what was not acknowledged goes back, in its place
        except (AMQPException, OSError) as exc:
            raise SourceError(f"{self.where}: {exc}") from exc
        return list(kept)

    async def _fetch(self, ids: Sequence[str], limit: int | None) -> list[Record]:
        if limit == 0:
            return []
        return list(reversed(await self._walk(ids, limit, ack=False)))

    async def count(self) -> int:
        try:
            channel = await self._conn.channel()
            try:
                queue = await channel.declare_queue(self._s.dlq_queue, durable=True)
                return int(queue.declaration_result.message_count or 0)
            finally:
                await channel.close()
        except (AMQPException, OSError) as exc:
            raise SourceError(f"{self.where}: {exc}") from exc

    async def delete(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return len(await self._walk(ids, None, ack=True))

    async def purge(self) -> int:
        count = await self.count()
        try:
            channel = await self._conn.channel()
            try:
                await (await channel.declare_queue(self._s.dlq_queue, durable=True)).purge()
            finally:
                await channel.close()
        except (AMQPException, OSError) as exc:
            raise SourceError(f"{self.where}: {exc}") from exc
        return count

    async def replace(self, add: Sequence[DeadLetter], remove: Sequence[str]) -> None:
        """New records first, then the deletions: a crash in between leaves a replayed record
        twice rather than losing one."""
        try:
            channel = await self._conn.channel()
            try:
                for record in add:
                    await channel.default_exchange.publish(
                        aio_pika.Message(
                            json.dumps(record.to_fields()).encode(),
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            content_type="application/json",
                        ),
                        routing_key=self._s.dlq_queue,
                    )
            finally:
                await channel.close()
        except (AMQPException, OSError) as exc:
            raise SourceError(f"replay: {exc}") from exc
        await self.delete(remove)

    async def close(self) -> None:
        with contextlib.suppress(AMQPException, OSError):
            await self._conn.close()
