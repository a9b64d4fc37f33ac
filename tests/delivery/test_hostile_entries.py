"""Entries that used to kill the daemon or its settler, on a real Redis: each one ends in the
dead-letter stream (raw bytes kept) or acted on, the reactor keeps consuming, nothing stays
pending; an entry that was already delivered max_deliveries times is set aside as poison before
it is processed again."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from reactor.delivery.executor import begin_trial
from reactor.delivery.outcome import Outcome
from reactor.delivery.state import MemoryStateStore
from reactor.settings import Settings, load_settings
from reactor.sources.base import delivery_key
from reactor.sources.redis_streams import RedisDeadLetters, RedisStreamsSource
from reactor.supermq.simulator import Simulator
from tests.conftest import REDIS_URL
from tests.delivery.helpers import redis_settings, running_reactor

RULES = """
[[rule]]
name = "seen"
on = ["config.create"]
[[rule.actions]]
type = "log"
message = "config {{ event.thing_id }}"

[[rule]]
name = "fails-naming-the-id"
on = ["config.update"]
retry = { attempts = 1 }
[[rule.actions]]
type = "log"
message = "{{ event.metadata[event.thing_id] }}"
"""
PROTO_BLOB = bytes([0x0A, 0x03, 0xFF, 0xFE, 0x00, 0x2A, 0x05, 0x80])


def _nested(depth: int, operation: str = "config.update") -> str:
    head = f'{{"operation":"{operation}","thing_id":"t","metadata":{{}},"client_key":"s3cret-key","x":'
    return head + "[" * depth + "]" * depth + "}"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(validate=False) as simulator:
        yield simulator


@pytest.fixture
async def raw_redis(redis_client: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)  # bytes in, bytes out: what a hostile publisher writes
    yield client
    await client.aclose()


def _settings(tmp_path: Path, sim: Simulator, unique: str, **worker: Any) -> Settings:
    return redis_settings(
        tmp_path,
        sim,
        unique,
        RULES,
        family="h",
        ops={"audit": True},
        state={"path": tmp_path / "state.sqlite3"},
        worker=worker,
    )


def _id(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


@contextlib.asynccontextmanager
async def _running(settings: Settings) -> AsyncIterator[list[Outcome]]:
    async with running_reactor(settings, state=MemoryStateStore()) as (_, outcomes, _stop):
        yield outcomes  # leaving re-raises what killed the reactor


async def _until(predicate: Any, task_hint: str, timeout_s: float = 10) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {task_hint}")


async def test_hostile_entries_are_dead_lettered_and_the_reactor_goes_on(
    redis_client: aioredis.Redis, raw_redis: aioredis.Redis, tmp_path: Path, sim: Simulator, unique: str
) -> None:
    settings = _settings(tmp_path, sim, unique)
    stream = settings.redis.streams[0]
    hostile: list[dict[Any, Any]] = [
        {"operation": "config.create", "thing_id": b"t\xff"},  # one non-UTF-8 byte
        {b"thing_id\xfe": "t", "operation": "config.create"},  # in a field name
        {"data": PROTO_BLOB},  # a binary protobuf blob in data
        {"data": _nested(10_000)},  # RecursionError in the decoder
        {"data": _nested(500)},  # deep, then dead-lettered by a failing rule: the settler died
        {"data": _nested(20)},  # accepted, fails its rule: its record is redacted at depth
        {"data": '{"operation":"config.update","thing_id":"\\ud800","metadata":{}}'},  # lone surrogate
        {"operation": "x" * 65_536, "thing_id": "t"},
    ]
    ids = [_id(await raw_redis.xadd(stream, fields)) for fields in hostile]
    await raw_redis.xadd(stream, {"operation": "config.create", "thing_id": "after"})
    async with _running(settings) as outcomes:
        await _until(lambda: len(outcomes) == len(hostile) + 1, "every entry settled")
    assert (await redis_client.xpending(stream, "g"))["pending"] == 0
    records = {
        r.fields["entry_id"]: r.fields
        for r in await RedisDeadLetters(redis_client, settings.redis.dlq_stream).records()
    }
    reasons = [records[i]["reason"] for i in ids]
    assert reasons == ["malformed"] * 5 + ["action_failed", "action_failed", "malformed"]
    first = json.loads(records[ids[0]]["event"])
    assert base64.b64decode(first["_b64"]["thing_id"]) == b"t\xff"  # raw bytes kept
    assert json.loads(records[ids[2]]["event"])["_b64"]["data"] == base64.b64encode(PROTO_BLOB).decode()
    assert "field 'thing_id' is not UTF-8 text" in records[ids[0]]["error"]
    assert "nested deeper than events.max_depth" in records[ids[3]]["error"]
    assert "\\ud800" in records[ids[6]]["error"]  # escaped, not a UnicodeEncodeError
    for i in ids[3:6]:
        assert "s3cret-key" not in records[i]["event"]  # masked, however deep the document
    last = outcomes[-1]
    assert last.event is not None
    assert last.event.thing_id == "after"
    assert last.dead_letter is None


async def test_an_entry_delivered_max_deliveries_times_is_poison_before_it_is_read_again(
    redis_client: aioredis.Redis, raw_redis: aioredis.Redis, tmp_path: Path, sim: Simulator, unique: str
) -> None:
    """Each crash while holding an entry leaves it pending; every restart re-reads it and Redis
    counts a delivery. Past max_deliveries, once it ran alone and the process died then (the mark
    in the state store), it is dead-lettered as poison, not decoded or run."""
    settings = _settings(tmp_path, sim, unique, max_deliveries=3)
    stream = settings.redis.streams[0]
    await redis_client.xgroup_create(stream, "g", id="0", mkstream=True)
    killer = _id(await raw_redis.xadd(stream, {"operation": "config.create", "thing_id": b"k\xff"}))
    fine = _id(
        await raw_redis.xadd(stream, {"operation": "config.create", "thing_id": "poisoned-by-crashes"})
    )
    await raw_redis.xreadgroup("g", "c1", {stream: ">"})  # delivery 1: the process died with both
    for _ in range(2):  # deliveries 2 and 3: two restarts that died again
        await raw_redis.xreadgroup("g", "c1", {stream: "0"})
    state = MemoryStateStore()
    for entry_id in (killer, fine):  # delivery 4 ran each alone, and the process died
        await begin_trial(state, delivery_key(stream, entry_id))
    await raw_redis.xreadgroup("g", "c1", {stream: "0"})
    async with running_reactor(settings, state=state) as (_, outcomes, _stop):
        await _until(lambda: len(outcomes) == 2, "both entries settled")
    assert {o.dead_letter.reason for o in outcomes if o.dead_letter} == {"poison"}
    assert all(o.event is None and not o.rules for o in outcomes)  # never decoded, no rule ran
    assert (await redis_client.xpending(stream, "g"))["pending"] == 0
    records = {
        r.fields["entry_id"]: r.fields
        for r in await RedisDeadLetters(redis_client, settings.redis.dlq_stream).records()
    }
    assert "delivered 5 times (max_deliveries 3)" in records[killer]["error"]
    assert base64.b64decode(json.loads(records[killer]["event"])["_b64"]["thing_id"]) == b"k\xff"
    assert json.loads(records[fine]["event"])["thing_id"] == "poisoned-by-crashes"


async def test_reclaimed_entries_are_read_as_bytes_too(
    redis_client: aioredis.Redis, raw_redis: aioredis.Redis, unique: str
) -> None:
    """XCLAIM (a dead consumer's entries) and the order check's XRANGE see the same bytes."""
    settings = load_settings(
        None,
        redis={
            "url": REDIS_URL,
            "streams": [f"h{unique}.things"],
            "group": "g",
            "consumer": "c2",
            "start_id": "0",
            "reclaim_idle_ms": 1,
        },
    ).redis
    stream = settings.streams[0]
    await redis_client.xgroup_create(stream, "g", id="0", mkstream=True)
    await raw_redis.xadd(stream, {"operation": "thing.create", "id": b"\xff\xfe"})
    await raw_redis.xreadgroup("g", "gone", {stream: ">"})  # a consumer that died holding it
    await asyncio.sleep(0.01)
    source = RedisStreamsSource(settings)
    await source.start()
    try:
        (claimed,) = await source.maintain()
        assert claimed.payload == {"operation": "thing.create", "id": b"\xff\xfe"}
        assert claimed.deliveries >= 2
    finally:
        await source.close()


async def test_unsettled_entries_stay_within_max_unsettled_bytes(
    raw_redis: aioredis.Redis, unique: str
) -> None:
    """Reading waits while what was read and not settled holds max_unsettled_bytes; the next
    read's COUNT is what fits at the largest entry size seen."""
    settings = load_settings(
        None,
        redis={
            "url": REDIS_URL,
            "streams": [f"h{unique}.things"],
            "group": "g",
            "consumer": "c1",
            "start_id": "0",
            "max_unsettled_bytes": 3 << 20,
        },
    ).redis
    stream = settings.streams[0]
    await raw_redis.xadd(stream, {"operation": "thing.create", "id": "t0", "blob": b"x" * (1 << 20)})
    source = RedisStreamsSource(settings)
    await source.start()
    try:
        first = await source.read(100, 10)  # the backlog read (id 0): nothing pending yet
        first += await source.read(100, 10)
        assert len(first) == 1
        for n in range(1, 9):
            await raw_redis.xadd(
                stream, {"operation": "thing.create", "id": f"t{n}", "blob": b"x" * (1 << 20)}
            )
        second = await source.read(100, 10)
        assert len(second) == 1  # 2 MiB of room left, entries of a little more than 1 MiB
        assert await source.read(100, 10) == []  # no room for another: waits for a settle, reads none
        await source.settle([*first, *second], [])
        third = await source.read(100, 10)
        assert len(third) == 2
        await source.settle(third, [])
        big = load_settings(None, redis={**settings.model_dump(), "max_unsettled_bytes": 1000}).redis
        alone = RedisStreamsSource(big)  # a budget smaller than one entry: one at a time
        await alone.start()
        try:
            assert len(await alone.read(100, 10)) + len(await alone.read(100, 10)) == 1
        finally:
            await alone.close()
    finally:
        await source.close()
