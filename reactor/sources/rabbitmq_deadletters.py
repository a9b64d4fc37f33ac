"""Dead-letter records kept in a durable RabbitMQ queue (``rabbitmq.dlq_queue``): the same
``reactor dlq`` commands as on Redis and NATS.

AMQP has no way to read a queue without taking its messages, so a listing takes them with
``basic.get`` unacknowledged, on a channel of its own, and gives every one back by closing that
channel: the broker requeues them in their places (marked redelivered, which a dead-letter record
does not care about). A deletion acknowledges the chosen ones before the channel closes. Nothing
else consumes the dead-letter queue, so nothing is handed elsewhere meanwhile. A record's id is a
hash of its body (``dl-<20 hex>``): the same on every listing. A listing holds the records it
returns (at most ``limit``), not the whole queue.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import deque
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.exceptions import AMQPException

from reactor.errors import SourceError
from reactor.redact import shown_url
from reactor.settings import RabbitSettings
from reactor.sources.deadletter import DeadLetter, DeadLetterStore, Record


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
    """``await RabbitDeadLetters.connect(settings)``; ``close()`` when done."""

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
