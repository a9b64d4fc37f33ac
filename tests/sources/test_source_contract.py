"""One contract, every source (memory, Redis Streams, NATS JetStream, RabbitMQ), on real servers:
delivery, ack, dead-letter, redelivery after a crash, clean stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from reactor.delivery.deadletter import DeadLetter
from reactor.events.decode import Decoder
from reactor.sources.base import Delivery, Source
from tests.sources.backends import BACKENDS, Backend, event_json


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[Backend]:
    chosen = BACKENDS[request.param](unique)
    await chosen.setup()
    yield chosen
    await chosen.teardown()


async def read_all(source: Source, count: int, timeout_s: float = 10) -> list[Delivery]:
    got: list[Delivery] = []
    async with asyncio.timeout(timeout_s):
        while len(got) < count:
            got += await source.read(count - len(got), 100)
    return got


async def test_delivery_decodes_to_events(backend: Backend) -> None:
    source = backend.source()
    await source.start()
    for n in range(1, 6):
        await backend.publish(backend.stream(), event_json(n))
    got = await read_all(source, 5)
    decoder = Decoder([backend.stream().split(".")[0], "supermq"])
    events = [
        decoder.decode(d.payload, source=source.name, stream=d.stream, entry_id=d.entry_id) for d in got
    ]
    assert [e.operation for e in events] == ["config.update"] * 5
    assert [e.get("seq") for e in events] == ["1", "2", "3", "4", "5"]
    assert all(d.deliveries == 1 for d in got)
    await source.settle(got, [])
    await source.close()


async def test_acked_entries_do_not_come_back(backend: Backend) -> None:
    source = backend.source()
    await source.start()
    await backend.publish(backend.stream(), event_json(1))
    got = await read_all(source, 1)
    await source.settle(got, [])
    await source.close()
    again = backend.source()
    await again.start()
    assert await again.read(10, 300) == []
    await again.close()


async def test_dead_letters_keep_the_reason(backend: Backend) -> None:
    source = backend.source()
    await source.start()
    await backend.publish(backend.stream(), event_json(1))
    (delivery,) = await read_all(source, 1)
    record = DeadLetter(
        delivery.stream,
        delivery.entry_id,
        "action_failed",
        "HTTP 503",
        {"x": "1"},
        rule="r",
        action="a",
        status=503,
        attempts=3,
    )
    await source.settle([delivery], [record])
    await source.close()
    (stored,) = await backend.dead_letters()
    assert (stored["reason"], stored["rule"], stored["status"], stored["attempts"]) == (
        "action_failed",
        "r",
        "503",
        "3",
    )
    assert stored["entry_id"] == delivery.entry_id


async def test_unsettled_entries_come_back_after_a_crash(backend: Backend) -> None:
    if not backend.can_crash:
        pytest.skip("an in-memory source has no process to crash")
    first = backend.source("c1")
    await first.start()
    await backend.publish(backend.stream(), event_json(1))
    (taken,) = await read_all(first, 1)
    # "crash": the connection goes away without settling (Redis: the liveness lease is not renewed)
    await first.close()
    second = backend.source("c2")
    await second.start()
    got: list[Delivery] = []
    async with asyncio.timeout(15):
        while not got:
            got = await second.read(10, 200)
            if not got:
                got = await second.maintain()  # Redis: claim from the consumer whose lease expired
    assert [d.entry_id for d in got] == [taken.entry_id]
    assert got[0].deliveries >= 2
    await second.settle(got, [])
    await second.close()


async def test_clean_stop_releases_unsettled_entries(backend: Backend) -> None:
    source = backend.source()
    await source.start()
    await backend.publish(backend.stream(), event_json(1))
    (taken,) = await read_all(source, 1)
    await source.release([taken])
    await source.close()
    again = backend.source()  # the same consumer: the released entry is back at once, not after a timeout
    await again.start()
    got = await read_all(again, 1, timeout_s=0.9 if backend.name == "nats" else 10)  # nats ack_wait is 1 s
    assert [d.entry_id for d in got] == [taken.entry_id] or backend.name == "rabbitmq"
    assert len(got) == 1
    await again.settle(got, [])
    await again.close()
