"""The order gate on a real Redis: what other consumers hold is read and decoded in chunks (memory
bounded by a constant, not by the input), remembered at most ``_MAX_KNOWN`` without thrashing, and
a foreign entry the decoder cannot handle holds nothing up and never stops the worker."""

from __future__ import annotations

import asyncio
import io
import json
import tracemalloc
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import pytest
import structlog

from reactor.delivery import order_gate
from reactor.delivery.order_gate import OrderGate
from reactor.events.decode import Decoder
from reactor.events.model import Event
from reactor.ops.logging import configure_logging, get_logger
from reactor.sources.base import Delivery, Source
from reactor.supervise import Supervisor
from tests.sources.backends import RedisBackend, event_json


@pytest.fixture
async def redis(unique: str) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(unique)
    await backend.setup()
    yield backend
    await backend.client.delete(backend.stream())
    await backend.teardown()


def _gate(backend: RedisBackend, source: Source, decoder: Decoder | None = None) -> OrderGate:
    stop = asyncio.Event()
    decoder = decoder or Decoder([backend.stream().split(".")[0], "supermq"])
    return OrderGate(source, decoder, (), {}, set(), stop, Supervisor(stop, get_logger("test")))


async def _held_elsewhere(backend: RedisBackend, bodies: Sequence[dict[str, Any]]) -> list[Delivery]:
    """``bodies`` published and held by consumer c1 (pending, unsettled); then one entry of
    device "x" published and read by c2: the delivery the gate is asked about."""
    holder = backend.source("c1")
    await holder.start()  # creates the group
    await holder.close()
    for body in bodies:
        await backend.publish(backend.stream(), body)
    group, stream = f"g{backend.unique}", backend.stream()
    taken = 0
    while taken < len(bodies):  # held by c1: read, never acked (no budget of a source's own)
        reply: Any = await backend.client.xreadgroup(group, "c1", {stream: ">"}, count=50)
        taken += len(reply[0][1])
    other = backend.source("c2")
    await other.start()
    await backend.publish(backend.stream(), event_json(len(bodies) + 1, "x"))
    got: list[Delivery] = []
    async with asyncio.timeout(10):
        while not got:
            got = await other.read(10, 100)  # only the new one: c1 holds the others
    await other.close()
    return got


async def test_memory_is_bounded_by_a_constant_not_by_what_others_hold(redis: RedisBackend) -> None:
    """600 foreign entries of 100 kB (60 MB) held by a dead consumer: the gate reads and decodes
    them a chunk at a time, so its peak is a chunk's worth, not the whole listing (before: one
    read_entries call of every unknown id, up to 100,000 XRANGE in one pipeline, every body at
    once: peak 121 MB here; after: 20 MB)."""
    size, count = 100_000, 600
    bodies = [event_json(n, f"d{n}") | {"pad": "x" * size} for n in range(count)]
    later = await _held_elsewhere(redis, bodies)
    source = redis.source("c2")
    await source.start()
    gate = _gate(redis, source)
    tracemalloc.start()
    try:
        assert await gate.blockers_of(later) == {}  # other devices: nothing held up
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await source.close()
    assert len(gate._known) == count  # every one was read and decoded
    bound = 3 * order_gate._READ_CHUNK * size  # a chunk of bodies, raw and decoded, and slack
    assert peak < bound, f"peak {peak / 1e6:.0f} MB for {count * size / 1e6:.0f} MB held"


async def test_a_full_cache_does_not_thrash(redis: RedisBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """More foreign entries than ``_MAX_KNOWN``: each round reads again only the excess (before:
    the cache was emptied in one go when full, and half or all of them were read again)."""
    monkeypatch.setattr(order_gate, "_MAX_KNOWN", 10)
    later = await _held_elsewhere(redis, [event_json(n, f"d{n}") for n in range(15)])
    source = redis.source("c2")
    await source.start()
    reads: list[int] = []
    real = source.read_entries

    async def counted(stream: str, entry_ids: Sequence[str]) -> dict[str, Delivery | None]:
        reads[-1] += len(entry_ids)
        return await real(stream, entry_ids)

    monkeypatch.setattr(source, "read_entries", counted)
    gate = _gate(redis, source)
    for _ in range(4):
        reads.append(0)
        assert await gate.blockers_of(later) == {}
        assert len(gate._known) <= 10  # bounded by the constant
    await source.close()
    assert reads == [15, 5, 5, 5]


class _BuggyDecoder(Decoder):
    """A decoder with a bug on one kind of entry (anything but a DecodeError)."""

    def decode(
        self, payload: Mapping[str, Any] | bytes | str, *, source: str, stream: str, entry_id: str
    ) -> Event:
        if isinstance(payload, Mapping) and payload.get("thing_id") == "bug":
            raise KeyError("a bug in the decoder")
        return super().decode(payload, source=source, stream=stream, entry_id=entry_id)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("INFO", "json", stream=buffer)
    yield buffer
    structlog.reset_defaults()


async def test_a_foreign_entry_the_decoder_cannot_handle_holds_nothing_up(
    redis: RedisBackend, log_lines: io.StringIO
) -> None:
    """The worker's own decode makes such an entry internal_error; held by another consumer, it
    has no device: it holds nothing up, never stops the worker, and is logged once (stream and
    entry id) however many rounds ask about it (before: the KeyError escaped blockers_of)."""
    later = await _held_elsewhere(redis, [event_json(1, "bug"), event_json(2, "x")])
    source = redis.source("c2")
    await source.start()
    prefix = redis.stream().split(".")[0]
    gate = _gate(redis, source, _BuggyDecoder([prefix, "supermq"]))
    entries: Any = await redis.client.xrange(redis.stream())
    bug, x, _ = [entry_id for entry_id, _ in entries]
    for _ in range(2):
        assert await gate.blockers_of(later) == {later[0].entry_id: {x}}  # x's earlier one only
    await source.close()
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line.startswith("{")]
    undecodable = [line for line in lines if line["event"] == "order_gate.undecodable_entry"]
    assert len(undecodable) == 1, undecodable
    assert (undecodable[0]["stream"], undecodable[0]["entry_id"]) == (redis.stream(), bug)
    assert "KeyError" in undecodable[0]["error"]
