"""One contract, every source (memory, Redis Streams, NATS JetStream, RabbitMQ), on real servers:
delivery, ack, dead-letter, redelivery after a crash, clean stop, and a delivery key (the
idempotency key of completed steps) that is stable across redeliveries and restarts and distinct
between messages, and what the order gate asks of a source (what other consumers hold)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from reactor.delivery import order_gate
from reactor.delivery.order_gate import OrderGate
from reactor.events.decode import Decoder
from reactor.ops.logging import get_logger
from reactor.sources.base import DeadLetter, Delivery, Source, entry_order
from reactor.supervise import Supervisor
from tests.sources.backends import BACKENDS, Backend, NatsBackend, RedisBackend, event_json


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


def _gate(backend: Backend, source: Source) -> OrderGate:
    """The worker's order gate on ``source``: the source lists and reads, the gate decodes."""
    stop = asyncio.Event()
    decoder = Decoder([backend.stream().split(".")[0], "supermq"])
    return OrderGate(source, decoder, (), {}, set(), stop, Supervisor(stop, get_logger("test")))


async def _delete(backend: Backend, delivery: Delivery) -> None:
    """Take an entry out of its store, as trimming or aging out would."""
    if isinstance(backend, RedisBackend):
        await backend.client.xdel(delivery.stream, delivery.entry_id)
    elif isinstance(backend, NatsBackend):
        await backend.js.delete_msg(backend.settings.stream, int(delivery.entry_id))


async def test_a_consumer_lists_and_reads_what_another_one_holds(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order gate's questions to a source: which earlier entries other consumers hold
    (``foreign_pending``), and what they are (``read_entries``); the gate decodes each one once
    and remembers at most ``_MAX_KNOWN``. Memory has one consumer; RabbitMQ tells nothing of
    what other consumers hold (README, "Delivery contract"): neither lists anything."""
    holder = backend.source("c1")
    await holder.start()
    for n, device in ((1, "a"), (2, "b"), (3, "a")):
        await backend.publish(backend.stream(), event_json(n, device))
    held = await read_all(holder, 3)
    if backend.name in ("memory", "rabbitmq"):
        assert await holder.foreign_pending(held) == {}
        await holder.settle(held, [])
        await holder.close()
        return
    other = backend.source("c2")
    await other.start()
    await backend.publish(backend.stream(), event_json(4, "a"))
    await backend.publish(backend.stream(), event_json(5, "b"))
    later = await read_all(other, 2)
    ((listed, ids),) = (await other.foreign_pending(later)).items()
    assert sorted(ids, key=entry_order) == [d.entry_id for d in held]
    entries = await other.read_entries(listed, ids)
    assert {i: (d.stream, _seq(backend, d)) for i, d in entries.items() if d} == {
        d.entry_id: (d.stream, _seq(backend, d)) for d in held
    }
    gate = _gate(backend, other)
    reads: list[str] = []
    real = other.read_entries

    async def counted(stream: str, entry_ids: Sequence[str]) -> dict[str, Delivery | None]:
        reads.extend(entry_ids)
        return await real(stream, entry_ids)

    monkeypatch.setattr(other, "read_entries", counted)
    a1, b2, a3 = (d.entry_id for d in held)
    expected = {later[0].entry_id: {a1, a3}, later[1].entry_id: {b2}}
    assert await gate.blockers_of(later) == expected
    assert await gate.blockers_of(later) == expected
    assert sorted(reads, key=entry_order) == [a1, b2, a3]  # read and decoded once, then remembered
    await _delete(backend, held[0])
    assert await real(listed, [a1]) == {a1: None}  # gone from the store: it holds nothing up
    monkeypatch.setattr(order_gate, "_MAX_KNOWN", 1)
    small = _gate(backend, other)
    assert await small.blockers_of(later) == {later[0].entry_id: {a3}, later[1].entry_id: {b2}}
    assert len(small._known) <= 1  # bounded by the constant, not by what another consumer holds
    await holder.settle(held, [])
    await other.settle(later, [])
    await holder.close()
    await other.close()
