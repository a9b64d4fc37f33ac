"""One helper per event store, so that one contract suite runs over every source."""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any

import aio_pika
import nats
import redis.asyncio as aioredis

from reactor.events.protowire import wrap_payload
from reactor.settings import NatsSettings, RabbitSettings, RedisSettings
from reactor.sources.base import Source
from reactor.sources.memory import MemorySource
from reactor.sources.nats_jetstream import NatsJetStreamSource
from reactor.sources.rabbitmq import RabbitMQSource
from reactor.sources.redis_streams import RedisStreamsSource
from tests.conftest import REDIS_URL, missing_server

NATS_URL = "nats://127.0.0.1:4222"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def event_json(n: int, device: str = "t1") -> dict[str, Any]:
    return {
        "operation": "config.update",
        "thing_id": device,
        "seq": str(n),
        "occurred_at": 1697041066438195084 + n,
    }


class Backend:
    """How to publish to, read from, and look at the dead letters of one event store."""

    name = "backend"
    can_crash = True

    def __init__(self, unique: str) -> None:
        self.unique = unique

    async def setup(self) -> None: ...

    def source(self, consumer: str = "c1", **options: Any) -> Source:
        raise NotImplementedError

    async def publish(self, stream: str, fields: dict[str, Any]) -> None:
        raise NotImplementedError

    async def dead_letters(self) -> list[dict[str, str]]:
        raise NotImplementedError

    async def teardown(self) -> None: ...

    def stream(self) -> str:
        return "supermq.bootstrap"


class MemoryBackend(Backend):
    name = "memory"
    can_crash = False

    def __init__(self, unique: str) -> None:
        super().__init__(unique)
        self._source = MemorySource(finite=False)

    def source(self, consumer: str = "c1", **options: Any) -> Source:
        return self._source

    async def publish(self, stream: str, fields: dict[str, Any]) -> None:
        self._source.add(stream, {k: str(v) for k, v in fields.items()})

    async def dead_letters(self) -> list[dict[str, str]]:
        return [d.to_fields() for d in self._source.dead_letters]


class RedisBackend(Backend):
    name = "redis"

    async def setup(self) -> None:
        self.client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            await self.client.ping()
        except OSError:
            missing_server("Redis on 6379")

    def stream(self) -> str:
        return f"c{self.unique}.bootstrap"

    def source(self, consumer: str = "c1", **options: Any) -> Source:
        settings = RedisSettings(
            url=REDIS_URL,
            streams=[self.stream()],
            group=f"g{self.unique}",  # the liveness lease is per group and consumer name
            consumer=consumer,
            start_id="0",
            dlq_stream=f"c{self.unique}.dlq",
            reclaim_idle_ms=300,
            **options,
        )
        return RedisStreamsSource(settings)

    async def publish(self, stream: str, fields: dict[str, Any]) -> None:
        await self.client.xadd(stream, {k: str(v) for k, v in fields.items()})

    async def dead_letters(self) -> list[dict[str, str]]:
        raw: Any = await self.client.xrange(f"c{self.unique}.dlq")
        return [dict(f) for _, f in raw]

    async def teardown(self) -> None:
        await self.client.aclose()


class NatsBackend(Backend):
    name = "nats"

    async def setup(self) -> None:
        if not _reachable(4222):
            missing_server("NATS JetStream on 4222")
        self.nc = await nats.connect(NATS_URL)
        self.js = self.nc.jetstream()
        self.settings = NatsSettings(
            url=NATS_URL,
            stream=f"EV{self.unique}",
            subjects=[f"ev{self.unique}.>"],
            durable=f"reactor{self.unique}",
            filter_subject=f"ev{self.unique}.>",
            ack_wait_s=1.0,
            dlq_stream=f"DLQ{self.unique}",
            dlq_subject=f"dlq{self.unique}",
        )
        source = self.source()
        await source.start()  # creates the streams
        await source.close()

    def stream(self) -> str:
        return f"ev{self.unique}.supermq.bootstrap"

    def source(self, consumer: str = "c1", **options: Any) -> Source:
        return NatsJetStreamSource(self.settings)

    async def publish(self, stream: str, fields: dict[str, Any]) -> None:
        # As SuperMQ publishes: JSON inside protobuf messaging.Message (payload field 6).
        await self.js.publish(stream, wrap_payload(json.dumps(fields).encode()))

    async def dead_letters(self) -> list[dict[str, str]]:
        info = await self.js.stream_info(self.settings.dlq_stream)
        records = []
        for seq in range(1, info.state.last_seq + 1):
            msg = await self.js.get_msg(self.settings.dlq_stream, seq)
            records.append(json.loads(msg.data or b"{}"))
        return records

    async def teardown(self) -> None:
        for name in (self.settings.stream, self.settings.dlq_stream):
            with contextlib.suppress(Exception):  # best effort clean-up
                await self.js.delete_stream(name)
        await self.nc.close()


class RabbitBackend(Backend):
    name = "rabbitmq"

    async def setup(self) -> None:
        if not _reachable(5672):
            missing_server("RabbitMQ on 5672")
        self.conn = await aio_pika.connect_robust(AMQP_URL)
        self.channel = await self.conn.channel()
        self.settings = RabbitSettings(
            url=AMQP_URL,
            exchange=f"events{self.unique}",
            queue=f"reactor{self.unique}",
            routing_keys=["events.#"],
            dlq_queue=f"dlq{self.unique}",
        )
        self.exchange = await self.channel.declare_exchange(
            self.settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        source = self.source()
        await source.start()  # declares and binds the queue
        await source.close()

    def source(self, consumer: str = "c1", **options: Any) -> Source:
        return RabbitMQSource(self.settings)

    async def publish(self, stream: str, fields: dict[str, Any]) -> None:
        body = wrap_payload(json.dumps(fields).encode())
        await self.exchange.publish(
            aio_pika.Message(body, content_type="application/octet-stream", app_id="supermq-publisher"),
            routing_key=f"events.{stream}",
        )

    async def dead_letters(self) -> list[dict[str, str]]:
        queue = await self.channel.declare_queue(self.settings.dlq_queue, durable=True)
        records = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            records.append(json.loads(message.body))
        return records

    async def teardown(self) -> None:
        for name in (self.settings.queue, self.settings.dlq_queue):
            await self.channel.queue_delete(name)
        await self.channel.exchange_delete(self.settings.exchange)
        await self.conn.close()


BACKENDS: dict[str, type[Backend]] = {
    b.name: b for b in (MemoryBackend, RedisBackend, NatsBackend, RabbitBackend)
}
