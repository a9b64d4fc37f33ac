"""RabbitMQ's byte budget: messages delivered and not settled hold at most
``rabbitmq.max_unsettled_bytes`` on a classic queue (the channel's prefetch follows the budget),
where ``prefetch`` alone would let 200 messages of any size in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest

from reactor.sources.base import Delivery
from reactor.sources.rabbitmq import RabbitMQSource
from tests.sources.backends import RabbitBackend

_BODY = 300_000


@pytest.fixture
async def rabbit(unique: str) -> AsyncIterator[RabbitBackend]:
    backend = RabbitBackend(unique)
    await backend.setup()
    yield backend
    await backend.teardown()


async def _publish(rabbit: RabbitBackend, count: int) -> None:
    for n in range(count):
        body = b'{"operation":"x","n":%d,"blob":"' % n + b"x" * _BODY + b'"}'
        await rabbit.exchange.publish(aio_pika.Message(body), routing_key="events.supermq.things")


async def _read_all(source: RabbitMQSource, wait_s: float = 0.6) -> list[Delivery]:
    """Everything the broker sends within ``wait_s``, unsettled."""
    got: list[Delivery] = []
    deadline = asyncio.get_running_loop().time() + wait_s
    while asyncio.get_running_loop().time() < deadline:
        got += await source.read(100, 50)
    return got


async def test_delivered_messages_stay_within_max_unsettled_bytes(rabbit: RabbitBackend) -> None:
    settings = rabbit.settings.model_copy(update={"max_unsettled_bytes": 1 << 20})
    source = RabbitMQSource(settings)
    await source.start()
    try:
        await _publish(rabbit, 10)
        held = await _read_all(source)
        assert len(held) == 3  # one to see a size; then what fits in 1 MiB beside it (~700 KiB)
        assert sum(len(d.payload) for d in held if isinstance(d.payload, bytes)) <= 1 << 20
        await source.settle(held[:2], [])
        more = await _read_all(source)
        assert len(more) == 2  # room for two more
        seen = len(held) + len(more)
        await source.settle([*held[2:], *more], [])
        async with asyncio.timeout(10):
            while seen < 10:  # nothing lost on the way
                rest = await _read_all(source, 0.1)
                assert len(rest) <= 3
                seen += len(rest)
                await source.settle(rest, [])
    finally:
        await source.close()
