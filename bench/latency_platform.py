"""The platform side of the latency benchmark, in a process of its own as SuperMQ is: XADDs events
at a fixed rate and serves the HTTP calls the reactor's action makes, noting for each event the
time from its XADD to its request's arrival.

``python -m bench.latency_platform REDIS_URL STREAM RATE EVENTS``: prints ``PORT <n>`` once its
server listens, starts XADDing on a ``go`` line on stdin, prints ``{"latency_ms": [...], "rate":
r}`` (the XADD-to-arrival times in event order, the XADD rate achieved) as one JSON line once
every event's request arrived.

It answers as ``bench.fastserver`` does: ``PUT /things/state/{id}`` (``bootstrap.change_state``
on the reactor's transport, the event found by its thing id) and ``POST /hook``
(``http.request`` on httpx's transport, the event found by the XADD time in the body).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import redis.asyncio as aioredis
from aiohttp import web

from bench.fastserver import token


class Platform:
    def __init__(self, events: int) -> None:
        self.sent_ns: dict[str, int] = {}
        self.latency_ms: dict[str, float] = {}
        self.events = events
        self.all_arrived = asyncio.Event()

    def arrived(self, thing: str, sent_ns: int) -> None:
        self.latency_ms[thing] = (time.time_ns() - sent_ns) / 1e6
        if len(self.latency_ms) >= self.events:
            self.all_arrived.set()

    async def state(self, request: web.Request) -> web.Response:
        await request.read()
        thing = request.match_info["id"]
        self.arrived(thing, self.sent_ns[thing])
        return web.Response(status=200)

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.arrived(body["thing"], int(body["sent"]))
        return web.Response(status=204)


async def _produce(client: aioredis.Redis, stream: str, rate: float, platform: Platform) -> float:
    """XADD the events at ``rate``; the rate achieved."""
    started = time.perf_counter()
    for n in range(platform.events):
        thing = f"t{n}"
        sent = time.time_ns()
        platform.sent_ns[thing] = sent
        await client.xadd(stream, {"operation": "config.create", "thing_id": thing, "sent_ns": str(sent)})
        delay = started + (n + 1) / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    return platform.events / (time.perf_counter() - started)


async def main(url: str, stream: str, rate: float, events: int) -> None:
    platform = Platform(events)
    app = web.Application()
    app.router.add_post("/users/tokens/issue", token)
    app.router.add_put("/things/state/{id}", platform.state)
    app.router.add_post("/hook", platform.hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"PORT {site._server.sockets[0].getsockname()[1]}", flush=True)  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "go": the reactor is reading
    client = aioredis.Redis.from_url(url)
    try:
        achieved = await _produce(client, stream, rate, platform)
        await asyncio.wait_for(platform.all_arrived.wait(), 60)
    finally:
        await client.aclose()
        await runner.cleanup()
    times = [platform.latency_ms[f"t{n}"] for n in range(events)]
    print(json.dumps({"latency_ms": times, "rate": achieved}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
