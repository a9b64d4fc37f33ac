"""6. Scale-out: 2 reactor processes in one consumer group against 1, on the same Redis stream."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.common import NOOP_RULE, ROOT, Result

URL = "redis://127.0.0.1:6379/0"
EVENTS = 30_000
RULES = NOOP_RULE


async def _fill(client: aioredis.Redis, stream: str) -> None:
    for start in range(0, EVENTS, 5000):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + 5000, EVENTS)):
                fields: dict[Any, Any] = {"operation": "config.create", "thing_id": f"t{i % 1000}"}
                pipe.xadd(stream, {**fields, "state": "0"})
            await pipe.execute()


def _caught_up(group: dict[str, Any] | None) -> bool:
    return group is not None and group.get("lag") == 0 and int(group["pending"]) == 0


async def _consume(processes: int, tmp: Path) -> float:
    client = aioredis.Redis.from_url(URL, decode_responses=True)
    stream = f"scale.{uuid.uuid4().hex[:8]}.bootstrap"
    await _fill(client, stream)
    config = tmp / f"{stream}.toml"
    config.write_text(f"""
[redis]
url = "{URL}"
streams = ["{stream}"]
group = "g"
start_id = "0"
batch_size = 500
block_ms = 20
[rules]
dir = "{tmp / "rules"}"
reload_interval_s = 0
[state]
backend = "redis"
[ops]
listen = ""
""")
    deadline = time.perf_counter() + 300
    started = time.perf_counter()
    command = [sys.executable, "-m", "reactor", "--config", str(config), "run"]
    logs = [(tmp / f"{stream}.{n}.log").open("wb") for n in range(processes)]  # JSON at INFO, as deployed
    procs = [
        await asyncio.create_subprocess_exec(*command, cwd=ROOT, env={**os.environ}, stderr=log)
        for log in logs
    ]
    try:
        while True:
            groups = await client.xinfo_groups(stream)
            group = next((g for g in groups if str(g["name"]) == "g"), None)
            if _caught_up(group):
                break
            if time.perf_counter() > deadline or any(p.returncode is not None for p in procs):
                raise RuntimeError("scale-out: the reactor processes did not drain the stream")
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            await proc.wait()
        for log in logs:
            log.close()
        leftovers = [key async for key in client.scan_iter("reactor:g:*")]  # state store, audit trail
        await client.delete(stream, *leftovers)
        await client.aclose()
    return EVENTS / elapsed


async def run() -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "rules").mkdir()
        (Path(tmp) / "rules" / "r.toml").write_text(RULES)
        one = await _consume(1, Path(tmp))
        two = await _consume(2, Path(tmp))
    return Result(
        "6. Scale-out: 2 processes in one consumer group against 1",
        {
            "1 process": f"{one:,.0f} events/s",
            "2 processes": f"{two:,.0f} events/s",
            "setup": f"{EVENTS:,} events, noop rule, start-up included, 2 cores shared with Redis; "
            "`reactor run` as deployed for several processes (JSON log at INFO to a file, metrics, "
            "audit on; state store and audit trail in Redis)",
        },
        ratio=two / one,
        target="reported (no target)",
        met=None,
    )


if __name__ == "__main__":
    print("\n".join(asyncio.run(run()).lines()))
