"""Onboarding on the real Mainflux (issue 17): N devices' bootstrap configs created through the
real bootstrap API, which publishes N ``config.create`` on its own Redis event store; the
reactor, as deployed (``reactor run``'s settings, the shipped rules, the streams
``mainflux.bootstrap`` and ``mainflux.things``), activates each (one ``PUT /things/state/{id}``).
The baseline, in the same run, is a bare aiohttp script making the same calls at the same
concurrency against the same services, on a fresh set of devices; the two take turns.

The deployment is the conformance suite's (``tests/conformance/deployment.py``: Mainflux built
from its source tarball, on free ports, databases of its own), started here under
``/tmp/conformance.lock`` with Mainflux's usual 15-minute tokens. Where it cannot be had (a
user's clone has no tarball), the section says "not measured" and why. Every device is read back
from the platform (config active, thing connected to exactly its channels): a wrong count fails
the section, and ``python -m bench`` with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import affinity
from bench import onboarding_figures as figures
from bench.common import ROOT, DeployedLog, Result, deployed_settings
from bench.mainflux_fleet import (
    ACTIVATE,
    Admin,
    Fleet,
    FleetError,
    Timings,
    Urls,
    bare_onboard,
    make_configs,
    make_devices,
    read_back,
)
from bench.platform_cpu import PlatformCpu
from reactor.app import Reactor
from reactor.delivery.executor import StepOutcome
from reactor.delivery.outcome import Outcome
from reactor.sources.redis_streams import RedisStreamsSource
from tests.conformance.deployment import (
    ADMIN_EMAIL,
    ADMIN_SECRET,
    Build,
    Deployment,
    NoDeploymentError,
    conformance_lock,
    locate_tarball,
)

NAME = "8. Onboarding on the real Mainflux: N bootstrap configs activated"
DEVICES = 300
REPEATS = 5
#: In flight on both sides. Not the daemon's default 64: at 64 this deployment's PostgreSQL
#: nears its 100 connections (shared with the machine) and its 1 s gRPC timeouts fail calls,
#: for no more throughput than at 16 (2 cores, the platform's own limit).
CONCURRENCY = 16
STREAMS = ["mainflux.bootstrap", "mainflux.things"]
TARGET = 0.90


class OnboardingError(Exception):
    """The reactor did not onboard every device (or the platform did not say so)."""


async def run(devices: int = DEVICES, repeats: int = REPEATS) -> Result:
    """The section: measured, or "not measured" with the reason, or failed with the count."""
    try:
        async with mainflux() as deployment:
            try:
                return await measure(deployment, devices, repeats)
            except (OnboardingError, FleetError) as exc:
                print(f"onboarding benchmark FAILED: {exc}", file=sys.stderr, flush=True)
                return Result(NAME, {"devices": f"{devices} per run"}, failed=str(exc))
    except NoDeploymentError as exc:
        return not_measured(str(exc))


@contextlib.asynccontextmanager
async def mainflux() -> AsyncIterator[Deployment]:
    """The real Mainflux, built (cached) and started under ``/tmp/conformance.lock``, with
    Mainflux's usual 15-minute tokens; ``NoDeploymentError`` saying why it cannot be had."""
    build = Build(locate_tarball())
    with conformance_lock():
        await asyncio.to_thread(build.ensure)
        deployment = Deployment(build, access_ttl_s=900)
        await asyncio.to_thread(deployment.start)
        try:
            yield deployment
        finally:
            await asyncio.to_thread(deployment.stop)


def not_measured(reason: str) -> Result:
    return Result(NAME, {"not measured": reason})


class Rounds:
    """Both sides' runs against one deployment, in turns."""

    concurrency = CONCURRENCY

    def __init__(self, deployment: Deployment, admin: Admin, log: DeployedLog, tmp: Path) -> None:
        self.d = deployment
        self.admin = admin
        self.log = log
        self.tmp = tmp
        self.cpu = PlatformCpu(deployment)
        self.bare: list[dict[str, Any]] = []
        self.ours: list[dict[str, Any]] = []
        self.timings = Timings()

    @property
    def urls(self) -> Urls:
        return self.admin.urls

    async def fleet(self, devices: int, side: str) -> tuple[Fleet, str]:
        """A fresh fleet, and the stream id after which only its configs' events come."""
        fleet = await make_devices(self.admin, f"{side}{uuid.uuid4().hex[:6]}", devices)
        start_id = await _last_id(self.d.events_url)
        await make_configs(self.admin, fleet)
        return fleet, start_id

    async def bare_side(self, devices: int) -> dict[str, Any]:
        fleet, _ = await self.fleet(devices, "b")
        window = self.cpu.window()
        wall, timings, retried = await bare_onboard(self.urls, ADMIN_EMAIL, ADMIN_SECRET, fleet, CONCURRENCY)
        own, platform = window.close()
        await self.check(fleet, "the bare script")
        self.timings.merge(timings)
        busy = sum(timings.by_call[ACTIVATE])
        return {"wall": wall, "cpu": own, "platform": platform, "retried": retried, "in_flight": busy / wall}

    async def reactor_side(self, devices: int) -> dict[str, Any]:
        fleet, start_id = await self.fleet(devices, "r")
        reactor, settled, done, seen = self._reactor(fleet, start_id)
        stop = asyncio.Event()
        window = self.cpu.window()
        started = time.perf_counter()
        task = asyncio.create_task(reactor.run(stop))
        gauges = asyncio.create_task(reactor.watch_backlog(stop))  # as ``reactor run`` does
        try:
            await asyncio.wait_for(done.wait(), 60 + devices)
        except TimeoutError:
            raise OnboardingError(f"the reactor settled {len(settled)} of {devices} config.create") from None
        finally:
            wall = time.perf_counter() - started
            own, platform = window.close()
            stop.set()
            await asyncio.wait_for(asyncio.gather(task, gauges), 30)
        await self.check(fleet, "the reactor")
        outcomes = [o for _, o in settled.values()]
        steps = [s for o in outcomes for s in _steps(o)]
        failed = [o for o in outcomes if o.dead_letter is not None or not all(s.ok for s in _steps(o))]
        if failed or len(steps) != devices:
            raise OnboardingError(f"{len(failed)} config.create failed, {len(steps)} steps for {devices}")
        return {
            "wall": wall,
            "cpu": own,
            "platform": platform,
            "retried": sum(s.attempts - 1 for s in steps),
            "step_s": [s.duration_s for s in steps],
            "first_s": min(t for t, _ in settled.values()) - started,
            "events": seen[0],
            "in_flight": sum(s.duration_s for s in steps) / wall,
        }

    def _reactor(
        self, fleet: Fleet, start_id: str
    ) -> tuple[Reactor, dict[str, tuple[float, Outcome]], asyncio.Event, list[int]]:
        """The daemon as ``reactor run`` builds it (its settings but the deployment's URLs, a group of
        its own from ``start_id``, ``CONCURRENCY`` in flight), and what it settled of the fleet."""
        group = f"bench-{fleet.tag}"
        settings = deployed_settings(
            self.tmp / group,
            source="redis",
            redis={
                "url": self.d.events_url,
                "streams": STREAMS,
                "group": group,
                "consumer": "c1",
                "start_id": start_id,
                "dlq_stream": f"{group}.dlq",
            },
            rules={"dir": ROOT / "rules"},
            supermq={
                "profile": "mainflux",
                **{f"{s}_url": self.d.url(s) for s in ("users", "things", "bootstrap", "certs", "http")},
                "identity": ADMIN_EMAIL,
                "secret": ADMIN_SECRET,
            },
            worker={"concurrency": CONCURRENCY},
        )
        wanted = set(fleet.config_ids)
        settled: dict[str, tuple[float, Outcome]] = {}
        done = asyncio.Event()
        seen = [0]  # every event settled until the fleet's last config.create

        def observe(outcome: Outcome) -> None:
            seen[0] += not done.is_set()
            event = outcome.event
            if event is not None and event.operation == "config.create" and event.device in wanted:
                settled[event.device] = (time.perf_counter(), outcome)
                if len(settled) == len(wanted):
                    done.set()

        source = RedisStreamsSource(settings.redis)
        reactor = Reactor.build(
            settings, source, self.log.logger(), observers=[observe], pause_on_login_failure=True
        )
        return reactor, settled, done, seen

    async def turns(self, devices: int, repeats: int) -> None:
        """``repeats`` rounds of every side, the order reversed every other round, so that a
        slow spell of the shared machine falls on every side rather than on one."""
        sides: list[tuple[list[dict[str, Any]], Callable[[], Awaitable[dict[str, Any]]]]] = [
            (self.bare, lambda: self.bare_side(devices)),
            (self.ours, lambda: self.reactor_side(devices)),
        ]
        for i in range(repeats):
            for runs, side in sides if i % 2 == 0 else sides[::-1]:
                runs.append(await side())

    async def check(self, fleet: Fleet, who: str) -> None:
        state = await read_back(self.admin, fleet)
        if not state.complete:
            raise OnboardingError(
                f"{who} onboarded {state.active} of {state.devices} devices (active configs), "
                f"{state.connected} connected to exactly their channels"
            )


def _steps(outcome: Outcome) -> list[StepOutcome]:
    return [s for r in outcome.rules for s in r.steps]


async def _last_id(events_url: str) -> str:
    """The newest entry id of the deployment's streams ("0" when there are none yet)."""
    client = aioredis.Redis.from_url(events_url, decode_responses=True)
    try:
        ids: list[tuple[int, int]] = []
        for stream in STREAMS:
            for entry_id, _ in await client.xrevrange(stream, count=1) or []:
                ms, seq = str(entry_id).split("-")
                ids.append((int(ms), int(seq)))
        return "-".join(map(str, max(ids))) if ids else "0"
    finally:
        await client.aclose()


async def measure(deployment: Deployment, devices: int, repeats: int) -> Result:
    """Both configurations against one deployment: shared cores first, then pinned."""
    urls = Urls(deployment.url("users"), deployment.url("things"), deployment.url("bootstrap"))
    async with Admin(urls, ADMIN_EMAIL, ADMIN_SECRET) as admin:
        with tempfile.TemporaryDirectory() as tmp:
            log = DeployedLog(Path(tmp))
            try:
                shared = await _configuration(Rounds(deployment, admin, log, Path(tmp)), devices, repeats)
                pinned = await _pinned(Rounds(deployment, admin, log, Path(tmp)), devices, repeats)
            finally:
                log.close()
    return _result(shared, pinned, devices, repeats)


async def _configuration(rounds: Rounds, devices: int, repeats: int) -> Rounds:
    warm = max(5, devices // 10)
    await rounds.bare_side(warm)  # warm-up, untimed: connections, caches, plans
    await rounds.reactor_side(warm)
    rounds.timings = Timings()
    await rounds.turns(devices, repeats)
    return rounds


async def _pinned(rounds: Rounds, devices: int, repeats: int) -> Pinned | str:
    """The same rounds with the platform's processes on CPU 0 and this one on CPU 1 (the reason
    instead where affinity is not available)."""
    why = affinity.unavailable()
    if why is not None:
        return why
    platform = [p.pid for p in rounds.d.procs.values()]
    with affinity.pinned(platform) as pinning:
        await _configuration(rounds, devices, repeats)
        held = all(pinning.on(pid, affinity.PLATFORM_CPU) for pid in platform) and pinning.on(
            os.getpid(), affinity.CLIENT_CPU
        )
    return Pinned(rounds, pinning, held)


@dataclass
class Pinned:
    rounds: Rounds
    pinning: affinity.Pinning
    held: bool  # every thread still on its CPU at the end

    def figures(self, devices: int) -> dict[str, str]:
        p = self.pinning.pinned
        return {
            PINNED: (
                f"the platform's {len(self.rounds.d.procs)} processes (its Go services, its private Redis: "
                f"{p.get(affinity.PLATFORM_CPU, 0)} threads) on CPU {affinity.PLATFORM_CPU}, this process "
                f"(the reactor or the bare script; {p.get(affinity.CLIENT_CPU, 0)} threads) on CPU "
                f"{affinity.CLIENT_CPU}, restored afterwards; PostgreSQL (the machine's shared service) "
                f"left unpinned; every thread still on its CPU at the end: {'yes' if self.held else 'NO'}"
            ),
            **figures.configuration(self.rounds, devices, "pinned: "),
        }


PINNED = "pinned configuration (the reactor alone on its core: a host of its own)"
SHARED = "shared-cores configuration (the figures above)"


def _result(shared: Rounds, pinned: Pinned | str, devices: int, repeats: int) -> Result:
    """The headline is the pinned ratio where it was measured: the reactor alone on its core
    models its own host, as deployed; the shared-cores figures stay beside it."""
    shared_ratio = figures.ratio(shared)
    out = {
        **figures.configuration(shared, devices),
        SHARED: (
            "the platform's processes, PostgreSQL and this process on both CPUs as the machine "
            "schedules them: the reactor's CPU is taken from the platform's"
        ),
    }
    if isinstance(pinned, Pinned):
        out.update(pinned.figures(devices))
        ratio = figures.ratio(pinned.rounds)
        headline = f"the pinned ratio; the shared-cores one beside it is {shared_ratio:.3f}"
    else:
        out[PINNED] = f"not measured: {pinned}"
        ratio = shared_ratio
        headline = "the shared-cores ratio (the pinned configuration not measured)"
    out |= {
        "headline ratio": headline,
        "setup": (
            f"{devices} devices per run (a thing, 2 channels, a config created inactive through the real "
            f"bootstrap API), a fresh set for every run; {CONCURRENCY} in flight on both sides; best of "
            f"{repeats} taken in turns, in each configuration; Mainflux 0.13.0+ (59bcb72f52c0) built from "
            "source, on this machine"
        ),
        "verified": (
            f"every run's {devices} devices read back from the platform: config active, thing connected "
            "to exactly its 2 channels"
        ),
    }
    return Result(NAME, out, ratio=ratio, target=f">= {TARGET:.2f}", met=ratio >= TARGET)


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else DEVICES
    print("\n".join(asyncio.run(run(size)).lines()))
