"""NATS JetStream on a private nats-server: what tells the worker to look a message's completed
steps up although JetStream counts it delivered once. A server killed and restarted forgets acks
and delivery counts it had not synced (acked messages came back delivered "once"), and hands
what a lost connection held to any consumer, while the holder may still act on its copy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from reactor.delivery.order_gate import OrderGate
from reactor.events.decode import Decoder
from reactor.ops.logging import get_logger
from reactor.settings import NatsSettings
from reactor.sources.base import Delivery
from reactor.sources.nats_jetstream import NatsJetStreamSource
from reactor.supervise import Supervisor
from tests.servers import PrivateNats


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[PrivateNats]:
    private = PrivateNats(tmp_path / "nats")
    private.start()
    yield private
    private.stop()


async def _publish(url: str, count: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    for n in range(count):
        await js.publish(
            "events.supermq.bootstrap", json.dumps({"operation": "config.update", "n": n}).encode()
        )
    await nc.close()


async def _read(source: NatsJetStreamSource, count: int) -> list[Delivery]:
    got: list[Delivery] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            got += await source.read(count - len(got), 100)
    return got


async def test_what_a_lost_connection_held_is_looked_up(server: PrivateNats) -> None:
    source = NatsJetStreamSource(NatsSettings(url=server.url, ack_wait_s=5.0))
    await source.start()
    await _publish(server.url, 2)
    held = await _read(source, 2)
    assert [source.maybe_acted_on(d) for d in held] == [False, False]  # fresh: no look-up
    await asyncio.to_thread(server.restart, 0.3)
    async with asyncio.timeout(10):
        while not await source.ready():
            await asyncio.sleep(0.05)
    assert [source.maybe_acted_on(d) for d in held] == [True, True]
    await source.settle(held, [])
    await source.close()


async def test_a_message_stored_long_before_its_first_delivery_counts_as_a_redelivery(
    server: PrivateNats,
) -> None:
    source = NatsJetStreamSource(NatsSettings(url=server.url))
    await source.start()
    await _publish(server.url, 1)
    await asyncio.sleep(1.2)  # past _FRESH_S: as when a restarted server hands out what it forgot was acked
    (late,) = await _read(source, 1)
    assert late.deliveries == 2
    assert source.maybe_acted_on(late)
    await source.settle([late], [])
    await source.close()


async def _publish_devices(url: str, devices: list[str]) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    for n, device in enumerate(devices):
        body = {"operation": "config.update", "thing_id": device, "n": n}
        await js.publish("events.supermq.bootstrap", json.dumps(body).encode())
    await nc.close()


def _gate(source: NatsJetStreamSource) -> OrderGate:
    """The worker's order gate on ``source``: it lists and reads, the gate decodes."""
    stop = asyncio.Event()
    return OrderGate(source, Decoder(), (), {}, set(), stop, Supervisor(stop, get_logger("test")))


async def test_a_dead_consumers_earlier_messages_of_a_device_hold_its_later_ones(server: PrivateNats) -> None:
    """A process killed while holding a device's messages: the next one is handed the device's
    later messages at once, the dead one's only after ``ack_wait``. Those later ones wait for the
    earlier ones (redelivered here, or acked), as on Redis: else an earlier one, applied and not
    yet recorded, would be applied again over the later one's effect (the soak's duplicates)."""
    settings = NatsSettings(url=server.url, ack_wait_s=1.5)
    dead = NatsJetStreamSource(settings)
    await dead.start()
    await _publish_devices(server.url, ["a", "b", "a"])
    held = await _read(dead, 3)
    await dead.settle([held[1]], [])  # b acked; a's two held when it dies
    await dead.close()
    await _publish_devices(server.url, ["a", "b"])

    source = NatsJetStreamSource(settings)
    await source.start()
    later = await _read(source, 2)  # JetStream hands the new ones first
    assert [d.entry_id for d in later] == ["4", "5"]
    gate = _gate(source)
    blockers = await gate.blockers_of(later)
    # b's earlier one was acked, but above the ack floor (1 is not): JetStream tells no more, so
    # 5 waits too, until the floor passes 2.
    assert blockers == {"4": {"1", "3"}, "5": {"2"}}
    assert await source.still_pending(later[0].stream, {"1", "2", "3"}) == {"1", "2", "3"}
    back = await _read(source, 2)  # after ack_wait, the dead one's come back here
    assert sorted(d.entry_id for d in back) == ["1", "3"]
    await source.settle(back, [])
    assert await source.still_pending(later[0].stream, {"1", "2", "3"}) == set()  # the floor is 3
    await source.settle(later, [])
    assert await gate.blockers_of(later) == {}
    await source.close()


async def test_held_messages_stay_within_max_unsettled_bytes(server: PrivateNats) -> None:
    """Reading waits while what was read and not settled holds ``nats.max_unsettled_bytes``; a
    read takes what fits at the largest message size seen (as ``redis.max_unsettled_bytes``)."""
    source = NatsJetStreamSource(NatsSettings(url=server.url, max_unsettled_bytes=1 << 20))
    await source.start()
    nc = await nats.connect(server.url)
    js = nc.jetstream()

    async def publish(count: int) -> None:
        for n in range(count):
            body = b'{"operation":"x","n":%d,"blob":"' % n + b"x" * 300_000 + b'"}'
            await js.publish("events.supermq.bootstrap", body)

    try:
        await publish(1)
        first = await _read(source, 1)
        await publish(8)
        second = await source.read(100, 200)
        assert len(second) == 2  # ~700 KiB of room left, messages of ~300 KiB
        assert await source.read(100, 50) == []  # no room for another: waits for a settle, reads none
        await source.settle([*first, *second], [])
        third = await source.read(100, 200)
        assert len(third) == 3
        await source.settle(third, [])
    finally:
        await nc.close()
        await source.close()
    alone = NatsJetStreamSource(NatsSettings(url=server.url, max_unsettled_bytes=1000))
    await alone.start()  # a budget smaller than one message: one at a time
    try:
        one = await alone.read(100, 200)
        assert len(one) == 1
        assert await alone.read(100, 50) == []
    finally:
        await alone.close()


async def test_one_process_holding_everything_asks_the_server_nothing_for_order(server: PrivateNats) -> None:
    """The order check's steady state (one process): every message from the floor up was held or
    acked here, so no consumer-info request is made per batch (it cost 40% of the throughput)."""
    source = NatsJetStreamSource(NatsSettings(url=server.url))
    await source.start()
    asked = 0
    real = source._js.consumer_info

    async def counted(*args: object, **kwargs: object) -> object:
        nonlocal asked
        asked += 1
        return await real(*args, **kwargs)

    source._js.consumer_info = counted
    gate = _gate(source)
    try:
        for round_ in range(3):
            await _publish_devices(server.url, ["a", "b", "a"])
            batch = await _read(source, 3)
            assert await gate.blockers_of(batch) == {}, round_
            await source.settle(batch[1:], [])  # out of order: the first stays held a while
            await source.settle(batch[:1], [])
        assert asked == 0
    finally:
        await source.close()
