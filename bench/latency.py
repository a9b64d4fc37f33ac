"""5. Latency: at a fixed 1,000 events/s, the time from XADD to the action's HTTP request
arriving at a loopback server: p50 and p99. Target: p99 under 10 ms."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from bench.common import DeployedLog, Result, deployed_reactor, deployed_settings
from reactor.sources.redis_streams import RedisStreamsSource

URL = "redis://127.0.0.1:6379/0"
RATE = 1000
EVENTS = 3000
RULES = """
[[rule]]
name = "notify"
on = ["config.create"]
[[rule.actions]]
type = "http.request"
method = "POST"
url = "{url}"
json_body = {{ sent = "{{{{ event.sent_ns }}}}" }}
"""


async def _measure(observers: bool) -> list[float]:
    """The sorted XADD-to-request times past the first 100, as deployed or without observers."""
    arrivals: list[float] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        arrivals.append((time.time_ns() - int(body["sent"])) / 1e6)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    stream = f"lat.{uuid.uuid4().hex[:8]}.bootstrap"
    client = aioredis.Redis.from_url(URL, decode_responses=True)
    with tempfile.TemporaryDirectory() as tmp:
        log = DeployedLog(Path(tmp))
        rules = Path(tmp) / "rules"
        rules.mkdir()
        (rules / "r.toml").write_text(RULES.format(url=f"http://127.0.0.1:{port}/hook"))
        settings = deployed_settings(
            Path(tmp),
            redis={
                "url": URL,
                "streams": [stream],
                "group": "g",
                "start_id": "0",
            },
            rules={"dir": rules, "reload_interval_s": 0},
            supermq={"http_allowlist": ["127.0.0.1"]},
            worker={"settle_interval_ms": 5, "block_ms": 1000, "batch_size": 100},
        )
        reactor = deployed_reactor(settings, RedisStreamsSource(settings.redis), log, observers=observers)
        stop = asyncio.Event()
        task = asyncio.create_task(reactor.run(stop))
        await asyncio.sleep(0.5)
        started = time.perf_counter()
        for n in range(EVENTS):
            fields: dict[Any, Any] = {
                "operation": "config.create",
                "thing_id": f"t{n % 100}",
                "sent_ns": str(time.time_ns()),
            }
            await client.xadd(stream, fields)
            delay = started + (n + 1) / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        while len(arrivals) < EVENTS:
            await asyncio.sleep(0.01)
        stop.set()
        await task
        log.close()
    await client.delete(stream)
    await client.aclose()
    await runner.cleanup()
    return sorted(arrivals[100:])  # the first 100 include connection set-up


def _p99(warm: list[float]) -> float:
    return warm[int(len(warm) * 0.99)]


async def run() -> Result:
    warm = await _measure(observers=True)
    bare = await _measure(observers=False)  # beside, to explain
    p50, p99 = statistics.median(warm), _p99(warm)
    return Result(
        "5. Latency at 1,000 events/s: XADD to the action's HTTP request",
        {
            "p50": f"{p50:.2f} ms",
            "p99": f"{p99:.2f} ms",
            "max": f"{warm[-1]:.2f} ms",
            "beside, to explain: without the observers": (
                f"p50 {statistics.median(bare):.2f} ms, p99 {_p99(bare):.2f} ms, max {bare[-1]:.2f} ms"
            ),
            "setup": f"{EVENTS:,} events at {RATE}/s; reactor as deployed (log line, metrics, SQLite audit "
            "and state store) and hook server in one process; Redis on loopback",
        },
        ratio=p99 / 10.0,
        target="p99 / 10 ms <= 1",
        met=p99 < 10.0,
    )


if __name__ == "__main__":
    print("\n".join(asyncio.run(run()).lines()))
