"""RabbitMQ's entry id is a hash of routing key and body: equal bodies are one event (SuperMQ's
body carries ``occurred_at`` in ns), held copies are all acked by one settle; the id is text that
does not sort, so messages run in arrival order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from reactor.sources.base import Delivery, Source, entry_order
from reactor.sources.rabbitmq import message_id
from tests.sources.backends import RabbitBackend, event_json


@pytest.fixture
async def rabbit(unique: str) -> AsyncIterator[RabbitBackend]:
    backend = RabbitBackend(unique)
    await backend.setup()
    yield backend
    await backend.teardown()


async def _read(source: Source, count: int) -> list[Delivery]:
    got: list[Delivery] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            got += await source.read(count - len(got), 100)
    return got


def test_the_id_depends_on_routing_key_and_body_only() -> None:
    one = message_id("events.supermq.bootstrap", b'{"occurred_at": 1}')
    assert one == message_id("events.supermq.bootstrap", b'{"occurred_at": 1}')
    assert one != message_id("events.supermq.bootstrap", b'{"occurred_at": 2}')
    assert one != message_id("events.supermq.things", b'{"occurred_at": 1}')
    assert message_id("a", b"bc") != message_id("ab", b"c")  # the routing key is length-prefixed
    assert entry_order(one) == (0, 0)  # never mistaken for an ordered stream id


async def test_equal_bodies_share_a_key_and_one_settle_acks_both(rabbit: RabbitBackend) -> None:
    source = rabbit.source()
    await source.start()
    for _ in range(2):
        await rabbit.publish(rabbit.stream(), event_json(1))
    first, second = await _read(source, 2)
    assert first.key == second.key
    await source.settle([first], [])  # the worker runs the event once and settles it once
    await source.close()
    again = rabbit.source()
    await again.start()
    assert await again.read(10, 500) == []  # neither copy was left unacked
    await again.close()
