"""``redis.streams`` glob patterns on a real Redis: SuperMQ HEAD's per-operation streams found by
SCAN (only streams, never the dead-letter stream), bounded by ``max_streams``, re-scanned every
``discover_interval_s``, streams created later joined from their start; ``reactor status``
lists them with the pattern that found them."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from reactor.actions.base import ActionRegistry
from reactor.ops.status import gather, print_status
from reactor.settings import RedisSettings, load_settings
from reactor.sources.base import Delivery
from reactor.sources.redis_streams import RedisStreamsSource, is_pattern
from tests.conftest import REDIS_URL


def _settings(unique: str, **over: object) -> RedisSettings:
    base: dict[str, object] = {
        "url": REDIS_URL,
        "streams": [f"t.{unique}.events.magistrala.bootstrap.*"],
        "group": "g",
        "consumer": "c1",
        "start_id": "$",
        "block_ms": 20,
        "dlq_stream": f"t.{unique}.events.magistrala.bootstrap.dlq",  # matches the pattern: never joined
        "discover_interval_s": 0.05,
        "reclaim_interval_s": 60,
    }
    base.update(over)
    return RedisSettings.model_validate(base)


def _data(op: str, **fields: object) -> dict[Any, Any]:
    return {"data": json.dumps({"operation": op, "occurred_at": 1, **fields})}


async def _read_all(source: RedisStreamsSource, want: int) -> list[Delivery]:
    got: list[Delivery] = []
    async with asyncio.timeout(5):
        while len(got) < want:
            got += await source.read(100, 20)
    return got


def _fields(delivery: Delivery) -> dict[str, Any]:
    assert isinstance(delivery.payload, dict)
    return delivery.payload


def test_patterns_are_names_with_glob_characters() -> None:
    assert [is_pattern(n) for n in ("a.*", "a.?", "a.[bc]", "events.supermq.clients")] == [
        True,
        True,
        True,
        False,
    ]


async def test_a_pattern_finds_existing_and_later_streams_and_joins_later_ones_from_their_start(
    redis_client: aioredis.Redis, unique: str
) -> None:
    prefix = f"t.{unique}.events.magistrala.bootstrap"
    await redis_client.xadd(f"{prefix}.config.create", _data("bootstrap.config.create", client_id="c1"))
    await redis_client.set(f"{prefix}.not_a_stream", "x")  # a key that matches, of another type
    await redis_client.xadd(f"{prefix}.dlq", {"x": "1"})
    source = RedisStreamsSource(_settings(unique), redis_client)
    await source.start()
    pattern = f"{prefix}.*"
    assert source.streams == {f"{prefix}.config.create": pattern}
    assert await source.read(100, 20) == []  # start_id "$": what was there before start is not read
    await redis_client.xadd(f"{prefix}.config.create", _data("bootstrap.config.update", client_id="c1"))
    # created after start, two entries before the reactor's next scan: both read, from the start
    await redis_client.xadd(
        f"{prefix}.client.change_state", _data("bootstrap.client.change_state", state="1")
    )
    await redis_client.xadd(
        f"{prefix}.client.change_state", _data("bootstrap.client.change_state", state="0")
    )
    await asyncio.sleep(0.06)
    assert await source.maintain() == []
    assert list(source.streams) == [f"{prefix}.config.create", f"{prefix}.client.change_state"]
    got = await _read_all(source, 3)
    ops = sorted(json.loads(_fields(d)["data"])["operation"] for d in got)
    assert ops == ["bootstrap.client.change_state"] * 2 + ["bootstrap.config.update"]
    assert {d.stream for d in got} == {f"{prefix}.config.create", f"{prefix}.client.change_state"}
    groups = await redis_client.xinfo_groups(f"{prefix}.client.change_state")
    assert [g["name"] for g in groups] == ["g"]
    await source.settle(got, [])
    assert [(r.lag, r.pending) for r in (await source.status()).streams] == [(0, 0), (0, 0)]
    await source.close()


async def test_only_patterns_and_nothing_matched_yet_reads_nothing_and_waits(
    redis_client: aioredis.Redis, unique: str
) -> None:
    source = RedisStreamsSource(_settings(unique), redis_client)
    await source.start()
    assert source.streams == {}
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await source.read(100, 50) == []
    assert loop.time() - began >= 0.04  # waited as a blocking read, not a busy loop
    await source.close()


async def test_max_streams_bounds_what_a_pattern_joins(redis_client: aioredis.Redis, unique: str) -> None:
    prefix = f"t.{unique}.events.magistrala.bootstrap"
    for op in ("a", "b", "c"):
        await redis_client.xadd(f"{prefix}.{op}", {"data": "{}"})
    literal = f"t.{unique}.literal"
    settings = _settings(unique, streams=[literal, f"{prefix}.*"], max_streams=2)
    source = RedisStreamsSource(settings, redis_client)
    await source.start()
    assert len(source.streams) == 2  # the literal one and one match
    assert source.streams[literal] is None
    assert source.truncated == {f"{prefix}.*"}
    joined = next(s for s in source.streams if s != literal)
    why = "more streams match than redis.max_streams (2); the rest are not read"
    assert source.notices() == [
        ("info", "redis.stream_joined", {"stream": joined, "pattern": f"{prefix}.*"}),
        ("warning", "redis.max_streams_reached", {"pattern": f"{prefix}.*", "error": why}),
    ]
    await redis_client.xadd(f"{prefix}.d", {"data": "{}"})
    await source.discover()
    assert source.notices() == []  # said once, not at every scan
    await source.close()


async def test_status_says_when_a_pattern_matches_nothing(
    redis_client: aioredis.Redis, unique: str, tmp_path: Path
) -> None:
    redis = _settings(unique, streams=[f"t.{unique}.nothing.*"]).model_dump()
    settings = load_settings(None, redis=redis, rules={"dir": tmp_path})
    status = await gather(settings, redis_client, ActionRegistry(()), None)
    assert [(s.stream, s.exists, s.pattern) for s in status.streams] == [
        (f"t.{unique}.nothing.*", False, f"t.{unique}.nothing.*")
    ]
    out = io.StringIO()
    print_status(status, out)
    assert "(no stream matches the pattern)" in out.getvalue()


async def test_status_lists_the_streams_a_pattern_matches(
    redis_client: aioredis.Redis, unique: str, tmp_path: Path
) -> None:
    prefix = f"t.{unique}.events.supermq.client"
    await redis_client.xadd(f"{prefix}.create", _data("client.create", id="x"))
    await redis_client.xadd(f"{prefix}.remove", _data("client.remove", id="x"))
    redis = _settings(unique, streams=[f"{prefix}.*"], start_id="0").model_dump()
    source = RedisStreamsSource(RedisSettings.model_validate(redis), redis_client)
    await source.start()
    status = await gather(
        load_settings(None, redis=redis, rules={"dir": tmp_path}), redis_client, ActionRegistry(()), None
    )
    rows = {s.stream: (s.exists, s.lag, s.pattern) for s in status.streams}
    assert rows == {
        f"{prefix}.create": (True, 1, f"{prefix}.*"),
        f"{prefix}.remove": (True, 1, f"{prefix}.*"),
    }
    out = io.StringIO()
    print_status(status, out)
    assert f"{prefix}.create" in out.getvalue()
    assert f"matched by {prefix}.*" in out.getvalue()
    await source.close()


async def test_a_read_over_many_streams_takes_no_more_entries_than_asked(
    redis_client: aioredis.Redis, unique: str
) -> None:
    """XREADGROUP's COUNT is per stream: over 5 matched streams a read of 100 must not take 250
    (what is read stays unsettled, the memory ``max_unsettled_bytes`` budgets)."""
    prefix = f"t.{unique}.events.supermq.client"
    for op in ("create", "update", "enable", "disable", "remove"):
        for n in range(50):
            await redis_client.xadd(f"{prefix}.{op}", _data(f"client.{op}", id=f"c{n}"))
    source = RedisStreamsSource(_settings(unique, streams=[f"{prefix}.*"], start_id="0"), redis_client)
    await source.start()
    total = 0
    async with asyncio.timeout(5):
        while total < 250:
            batch = await source.read(100, 20)
            assert len(batch) <= 100
            total += len(batch)
            await source.settle(batch, [])
    assert total == 250
    await source.close()


async def test_a_pattern_never_joins_the_reactors_own_streams(
    redis_client: aioredis.Redis, unique: str
) -> None:
    """A broad pattern (``*``) must not make the reactor consume its dead letters or its audit
    trail (``reactor:<group>:audit``, app.build_audit), whatever the group."""
    group = f"g{unique}"
    await redis_client.xadd(f"reactor:{group}:audit", {"x": "1"})
    await redis_client.xadd(f"t.{unique}.dlq", {"x": "1"})
    await redis_client.xadd(f"t.{unique}.events.supermq.client.create", _data("client.create", id="x"))
    settings = _settings(unique, streams=[f"*{unique}*"], group=group, dlq_stream=f"t.{unique}.dlq")
    source = RedisStreamsSource(settings, redis_client)
    await source.start()
    assert list(source.streams) == [f"t.{unique}.events.supermq.client.create"]
    await source.close()
