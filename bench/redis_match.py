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

from bench.common import NOOP_RULE, DeployedLog, Result, deployed_reactor, deployed_settings, spread
from reactor.sources.redis_streams import RedisStreamsSource

URL = "redis://127.0.0.1:6379/0"
REPEATS = 3
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


async def raw_rate(client: aioredis.Redis, stream: str, group: str) -> float:
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


async def reactor_rate(
    stream: str, rules: Path, group: str, log: DeployedLog, observers: bool = True
) -> float:
    """The daemon's loop on the stream, with (as deployed) or without its observers."""
    settings = deployed_settings(
        rules.parent / group,
        redis={
            "url": URL,
            "streams": [stream],
            "group": group,
            "start_id": "0",
        },
        rules={"dir": rules, "reload_interval_s": 0},
        worker={"max_in_flight": 5000, "batch_size": BATCH, "block_ms": 5},
    )
    reactor = deployed_reactor(settings, RedisStreamsSource(settings.redis), log, observers=observers)
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
    client = aioredis.Redis.from_url(URL, decode_responses=True)
    stream = f"bench.{uuid.uuid4().hex[:8]}.bootstrap"
    raws: list[float] = []
    ours: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        log = DeployedLog(Path(tmp))
        try:
            await _fill(client, stream)
            rules = Path(tmp) / "rules"
            rules.mkdir()
            (rules / "r.toml").write_text(RULES)
            for n in range(REPEATS):  # in turns: a slow spell of the machine falls on all three
                raws.append(await raw_rate(client, stream, f"raw{n}"))
                ours.append(await reactor_rate(stream, rules, f"reactor{n}", log))
                bare.append(await reactor_rate(stream, rules, f"bare{n}", log, observers=False))
            lines = log.lines()
        finally:
            log.close()
            await client.delete(stream)
            await client.aclose()
    raw, best, stripped = max(raws), max(ours), max(bare)
    ratio = best / raw
    return Result(
        "1. Match-only throughput from a Redis stream",
        {
            "raw redis-py XREADGROUP/XACK loop": f"{raw:,.0f} events/s ({spread(raws)})",
            "reactor as deployed (decode, match, noop, settle; log line, metrics, audit)": (
                f"{best:,.0f} events/s ({spread(ours)})"
            ),
            "beside, to explain: the reactor without its observers": (
                f"{stripped:,.0f} events/s ({spread(bare)}), {stripped / raw:.3f} of raw"
            ),
            "log lines written": f"{lines:,} (JSON at INFO, to a file)",
            "setup": f"{EVENTS:,} events, batches of {BATCH}, one Redis on loopback, best of {REPEATS} "
            "taken in turns",
        },
        ratio=ratio,
        target=">= 0.50",
        met=ratio >= 0.50,
    )


if __name__ == "__main__":
    print("\n".join(asyncio.run(run()).lines()))
