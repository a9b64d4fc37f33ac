"""The two other faces of every event store (memory, Redis Streams, NATS JetStream, RabbitMQ), on
real servers: its status (what the daemon's lag, pending and dead-letter gauges and ``reactor
status`` show) and its dead letters (what ``reactor dlq`` lists, shows and deletes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from reactor.sources.base import DeadLetter, Delivery, Source
from tests.sources.backends import BACKENDS, Backend, event_json


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[Backend]:
    chosen = BACKENDS[request.param](unique)
    await chosen.setup()
    yield chosen
    await chosen.teardown()


async def read_some(source: Source, count: int) -> list[Delivery]:
    got: list[Delivery] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            got += await source.read(count - len(got), 100)
    return got


def record(backend: Backend) -> DeadLetter:
    return DeadLetter(backend.stream(), "9", "action_failed", "HTTP 503", {"x": "1"}, rule="push")


async def test_status_counts_the_backlog_the_pending_and_the_dead_letters(backend: Backend) -> None:
    source = backend.source()
    await source.start()
    for n in range(1, 4):
        await backend.publish(backend.stream(), event_json(n))
    await source.settle([], [record(backend)])
    async with asyncio.timeout(5):  # a broker counts what it was sent a moment later
        while [(s.lag, s.pending) for s in (await source.status()).streams] != [(3, 0)]:
            await asyncio.sleep(0.05)
    held = await read_some(source, 2)
    status = await source.status()
    (stream,) = status.streams
    assert stream.exists
    assert (stream.lag, stream.pending) == (1, 2)
    assert status.dead_letters == 1
    await source.settle(held, [])
    assert [(s.lag, s.pending) for s in (await source.status()).streams] == [(1, 0)]
    await source.close()


async def test_dead_letters_are_listed_shown_and_deleted(backend: Backend) -> None:
    source = backend.source()
    await source.start()
    await source.settle([], [record(backend), DeadLetter(backend.stream(), "10", "poison", "killed", {})])
    dead = await source.open_dead_letters()
    try:
        assert await dead.count() == 2
        newest, oldest = await dead.records()
        assert (newest.fields["entry_id"], oldest.fields["entry_id"]) == ("10", "9")
        assert await dead.count() == 2  # listed, not taken (RabbitMQ: given back to the queue)
        assert [r.fields["rule"] for r in await dead.records(rule="push")] == ["push"]
        (again,) = await dead.records(ids=[oldest.id])
        assert again.fields["error"] == "HTTP 503"
        assert [r.id for r in await dead.records(limit=1)] == [newest.id]
        assert await dead.delete([oldest.id]) == 1
        assert [r.fields["entry_id"] for r in await dead.records()] == ["10"]
        assert await dead.count() == 1
    finally:
        await dead.close()
    await source.close()
