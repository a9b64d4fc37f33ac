"""``foreign_pending`` on a real Redis with several streams in one batch: the XPENDING summaries
of every stream in one round trip, then the listings, in one more, only for the streams where
another consumer holds entries (each up to the batch's last entry there)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from reactor.settings import RedisSettings
from reactor.sources.base import Delivery
from reactor.sources.redis_streams import RedisStreamsSource
from tests.conftest import REDIS_URL


def _settings(unique: str, consumer: str, streams: list[str]) -> RedisSettings:
    return RedisSettings.model_validate(
        {
            "url": REDIS_URL,
            "streams": streams,
            "group": "g",
            "consumer": consumer,
            "start_id": "0",
            "block_ms": 20,
            "dlq_stream": f"t.{unique}.dlq",
            "reclaim_interval_s": 60,
        }
    )


async def _read(source: RedisStreamsSource, count: int) -> list[Delivery]:
    got: list[Delivery] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            got += await source.read(count - len(got), 100)
    return got


class _Trips:
    """Round trips to Redis: each command or pipeline takes a connection from the pool once."""

    def __init__(self, source: RedisStreamsSource, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        pool = source._client.connection_pool
        real: Callable[..., Awaitable[Any]] = pool.get_connection

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await real(*args, **kwargs)

        monkeypatch.setattr(pool, "get_connection", counted)


@pytest.mark.parametrize("foreign_in", [0, 1, 3])
async def test_foreign_pending_asks_all_streams_at_once(
    unique: str, monkeypatch: pytest.MonkeyPatch, foreign_in: int
) -> None:
    streams = [f"t.{unique}.s{i}" for i in range(3)]
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    holder = RedisStreamsSource(_settings(unique, "c1", streams[:foreign_in] or streams[:1]))
    other = RedisStreamsSource(_settings(unique, "c2", streams))
    try:
        for stream in streams:
            await client.xadd(stream, {"n": "1"})
        await holder.start()
        await other.start()
        held = await _read(holder, max(1, foreign_in))
        if foreign_in == 0:
            await holder.settle(held, [])  # nobody else holds anything
        for stream in streams:
            await client.xadd(stream, {"n": "2"})
        later = await _read(other, 2 * len(streams) - len(held))
        trips = _Trips(other, monkeypatch)
        listed = await other.foreign_pending(later)
        expected = {} if foreign_in == 0 else {d.stream: [d.entry_id] for d in held}
        assert listed == expected
        assert trips.count == (1 if foreign_in == 0 else 2)
        await other.settle(later, [])
        await holder.settle(held if foreign_in else [], [])
    finally:
        await holder.close()
        await other.close()
        await client.delete(*streams)
        await client.aclose()
