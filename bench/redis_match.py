"""1. Match-only throughput from a real Redis stream vs the raw limit of a redis-py asyncio loop
(XREADGROUP batch 500, XACK, no processing), same Redis, same run."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.common import NOOP_RULE, Result
from reactor.app import Reactor
from reactor.delivery.state import MemoryStateStore
from reactor.ops.logging import configure_logging, get_logger
from reactor.settings import load_settings
from reactor.sources.redis_streams import RedisStreamsSource

URL = "redis://127.0.0.1:6379/0"
EVENTS = 50_000
BATCH = 500
RULES = NOOP_RULE


async def _fill(client: aioredis.Redis, stream: str) -> None:
    fields: dict[Any, Any] = {
        "operation": "config.create",
        "thing_id": "",
        "state": "0",
        "channels": "[a,b]",
        "occurred_at": "1693313286544243035",
    }
    for start in range(0, EVENTS, 5000):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + 5000, EVENTS)):
                pipe.xadd(stream, {**fields, "thing_id": f"t{i % 1000}"})
            await pipe.execute()


async def raw_rate(client: aioredis.Redis, stream: str) -> float:
    group = "raw"
    await client.xgroup_create(stream, group, id="0")
    done = 0
    started = time.perf_counter()
    while done < EVENTS:
        reply: Any = await client.xreadgroup(group, "c", {stream: ">"}, count=BATCH)
        for _, entries in reply:
            ids = [entry_id for entry_id, _ in entries]
            await client.xack(stream, group, *ids)
            done += len(ids)
    return EVENTS / (time.perf_counter() - started)


async def reactor_rate(stream: str, rules: Path, group: str) -> float:
    settings = load_settings(
        None,
        redis={
            "url": URL,
            "streams": [stream],
            "group": group,
            "start_id": "0",
            "batch_size": BATCH,
            "block_ms": 5,
        },
        rules={"dir": rules, "reload_interval_s": 0},
        worker={"max_in_flight": 5000},
        ops={"audit": False},
    )
    reactor = Reactor.build(
        settings, RedisStreamsSource(settings.redis), get_logger("bench"), state=MemoryStateStore()
    )
    reactor.worker.settler._observers = []  # measure the pipeline, not the per-event log line
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(reactor.run(stop))
    while reactor.worker.counters.events < EVENTS:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return EVENTS / elapsed


async def run() -> Result:
    configure_logging("ERROR", "json")
    client = aioredis.Redis.from_url(URL, decode_responses=True)
    stream = f"bench.{uuid.uuid4().hex[:8]}.bootstrap"
    try:
        await _fill(client, stream)
        with tempfile.TemporaryDirectory() as tmp:
            rules = Path(tmp)
            (rules / "r.toml").write_text(RULES)
            raw = await raw_rate(client, stream)
            ours = await reactor_rate(stream, rules, "reactor")
    finally:
        await client.delete(stream)
        await client.aclose()
    ratio = ours / raw
    return Result(
        "1. Match-only throughput from a Redis stream",
        {
            "raw redis-py XREADGROUP/XACK loop": f"{raw:,.0f} events/s",
            "reactor (decode, match, noop, settle)": f"{ours:,.0f} events/s",
            "setup": f"{EVENTS:,} events, batches of {BATCH}, one Redis on loopback",
        },
        ratio=ratio,
        target=">= 0.50",
        met=ratio >= 0.50,
    )


if __name__ == "__main__":
    print("\n".join(asyncio.run(run()).lines()))
