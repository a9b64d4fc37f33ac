"""One contract, every source (memory, Redis Streams, NATS JetStream, RabbitMQ), on real servers:
delivery, ack, dead-letter, redelivery after a crash, clean stop, and a delivery key (the
idempotency key of completed steps) that is stable across redeliveries and restarts and distinct
between messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from reactor.events.decode import Decoder
from reactor.sources.base import Delivery, Source
from reactor.sources.deadletter import DeadLetter
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
    assert [d.key for d in got] == [taken.key]
    await again.settle(got, [])
    await again.close()


def _seq(backend: Backend, delivery: Delivery) -> str:
    decoder = Decoder([backend.stream().split(".")[0], "supermq"])
    event = decoder.decode(
        delivery.payload, source="test", stream=delivery.stream, entry_id=delivery.entry_id
    )
    return str(event.get("seq"))


async def _read_or_claim(source: Source, count: int, timeout_s: float = 15) -> list[Delivery]:
    """Entries read or (Redis) claimed from a consumer whose lease expired, until ``count``."""
    got: list[Delivery] = []
    async with asyncio.timeout(timeout_s):
        while len(got) < count:
            got += await source.read(count - len(got), 200)
            got += await source.maintain()
    return got


async def test_keys_are_stable_across_a_restart_and_distinct_between_messages(backend: Backend) -> None:
    """A message taken by a consumer that died comes back, to a new consumer process, with the
    key it had; every other message, read before or after the restart, has a key of its own
    (RabbitMQ numbered deliveries per process: the redelivered message took the key of another
    one whose steps had completed, and was acked with nothing applied)."""
    if not backend.can_crash:
        pytest.skip("an in-memory source has no process to crash")
    first = backend.source("c1")
    await first.start()
    for n in (1, 2):
        await backend.publish(backend.stream(), event_json(n))
    by_seq = {_seq(backend, d): d for d in await read_all(first, 2)}
    await first.settle([by_seq["1"]], [])
    await first.close()  # dies holding message 2
    await backend.publish(backend.stream(), event_json(3))
    second = backend.source("c2")
    await second.start()
    again = {_seq(backend, d): d for d in await _read_or_claim(second, 2)}
    assert sorted(again) == ["2", "3"]
    assert again["2"].key == by_seq["2"].key  # stable: the same message, the same key
    assert again["2"].deliveries >= 2
    keys = [by_seq["1"].key, by_seq["2"].key, again["3"].key]
    assert len(set(keys)) == 3, keys  # distinct: no message reuses another's completed steps
    await second.settle(list(again.values()), [])
    await second.close()


async def test_keys_are_distinct_between_messages_of_a_burst(backend: Backend) -> None:
    source = backend.source()
    await source.start()
    for n in range(1, 51):
        await backend.publish(backend.stream(), event_json(n))
    got = await read_all(source, 50)
    assert len({d.key for d in got}) == 50
    assert all(d.key == f"{d.stream}/{d.entry_id}" for d in got)
    await source.settle(got, [])
    await source.close()


async def test_a_live_consumer_keeps_what_it_holds(backend: Backend) -> None:
    """A message held past the redelivery timeout (NATS's ack_wait, Redis's lease) by a consumer
    whose upkeep runs is not handed to another one: the other would apply it a second time while
    the holder still does (JetStream redelivered it after ack_wait, however alive the holder was)."""
    if not backend.can_crash:
        pytest.skip("an in-memory source has one consumer")
    holder = backend.source("c1")
    await holder.start()
    await backend.publish(backend.stream(), event_json(1))
    (taken,) = await read_all(holder, 1)
    other = backend.source("c2")
    await other.start()

    async def upkeep() -> None:  # as the worker runs it (at most 0.1 s apart: the lease is 0.3 s here)
        while True:
            await holder.maintain()
            await asyncio.sleep(min(holder.maintain_interval_s, 0.1))

    keeping = asyncio.create_task(upkeep())
    stolen: list[Delivery] = []
    deadline = asyncio.get_running_loop().time() + 2.5  # past ack_wait (1 s) and the lease
    while asyncio.get_running_loop().time() < deadline:
        stolen += await other.read(10, 100)
        stolen += await other.maintain()
    keeping.cancel()
    assert stolen == []
    await holder.settle([taken], [])
    await holder.close()
    await other.close()
