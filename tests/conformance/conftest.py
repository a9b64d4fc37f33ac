"""Fixtures of the conformance suite: the real Mainflux (built from its source tarball), the test's
admin hands on it, and the reactor daemon consuming its real Redis streams.

Without the tarball (a user's clone) the suite skips, saying where it looked; under ``CI=true``
a missing tarball, PostgreSQL or NATS fails the run instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.ops.logging import get_logger
from reactor.settings import Settings, load_settings
from reactor.sources.redis_streams import RedisStreamsSource
from tests.conformance.deployment import (
    ADMIN_EMAIL,
    ADMIN_SECRET,
    Build,
    Deployment,
    NoDeploymentError,
    locate_tarball,
)
from tests.conformance.platform import Platform
from tests.conftest import REPO, missing_server

STREAMS = ["mainflux.bootstrap", "mainflux.things"]


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    try:
        build = Build(locate_tarball())
        build.ensure()
        deployment = Deployment(build)
        deployment.start()
    except NoDeploymentError as exc:
        missing_server(f"the real Mainflux deployment ({exc})")
        raise  # not reached: missing_server skips or fails
    try:
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture
def platform(deployment: Deployment) -> Iterator[Platform]:
    hands = Platform(deployment)
    yield hands
    hands.close()


@dataclass
class Running:
    """A reactor consuming the deployment's streams, and what it did."""

    reactor: Reactor
    outcomes: list[Outcome] = field(default_factory=list)

    def of(self, operation: str, device: str | None = None) -> list[Outcome]:
        return [
            o
            for o in self.outcomes
            if o.event is not None
            and o.event.operation == operation
            and (device is None or o.event.device == device)
        ]

    async def settled(
        self, operation: str, device: str | None = None, count: int = 1, timeout_s: float = 20
    ) -> list[Outcome]:
        """Wait until ``count`` events ``operation`` about ``device`` are settled."""
        await eventually(
            lambda: len(self.of(operation, device)) >= count, timeout_s, f"{count}x {operation} settled"
        )
        return self.of(operation, device)


async def eventually(check: Callable[[], bool], timeout_s: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f}s: {what}")
        await asyncio.sleep(0.05)


def reactor_settings(deployment: Deployment, tmp: Path, **sections: Any) -> Settings:
    """The settings an operator of this deployment would write, with a group of the test's own."""
    group = f"conformance-{uuid.uuid4().hex[:8]}"
    supermq = {
        "profile": "mainflux",
        "users_url": deployment.url("users"),
        "things_url": deployment.url("things"),
        "bootstrap_url": deployment.url("bootstrap"),
        "certs_url": deployment.url("certs"),
        "http_url": deployment.url("http"),
        "identity": ADMIN_EMAIL,
        "secret": ADMIN_SECRET,
    } | sections.pop("supermq", {})
    values: dict[str, Any] = {
        "redis": {
            "url": deployment.events_url,
            "streams": STREAMS,
            "group": group,
            "consumer": "c1",
            "start_id": "$",
            "block_ms": 50,
            "dlq_stream": f"{group}.dlq",
        },
        "rules": {"dir": REPO / "rules", "reload_interval_s": 0},
        "state": {"backend": "redis"},
        "supermq": supermq,
    }
    return load_settings(None, **(values | sections))


RunReactor = Callable[..., contextlib.AbstractAsyncContextManager[Running]]


@pytest.fixture
def run_reactor(deployment: Deployment, tmp_path: Path) -> RunReactor:
    @contextlib.asynccontextmanager
    async def run(**sections: Any) -> AsyncIterator[Running]:
        settings = reactor_settings(deployment, tmp_path, **sections)
        outcomes: list[Outcome] = []
        source = RedisStreamsSource(settings.redis)
        reactor = Reactor.build(settings, source, get_logger("conformance"), observers=[outcomes.append])
        running = Running(reactor, outcomes)
        stop = asyncio.Event()
        task = asyncio.create_task(running.reactor.run(stop))
        events = aioredis.Redis.from_url(deployment.events_url)
        try:
            await _groups_exist(events, settings.redis.group)
            yield running
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await events.aclose()

    return run


async def _groups_exist(events: aioredis.Redis, group: str) -> None:
    """The reactor reads from "$": it must have made its groups before the test acts."""

    async def made() -> bool:
        for stream in STREAMS:
            with contextlib.suppress(Exception):
                if not any(g["name"].decode() == group for g in await events.xinfo_groups(stream)):
                    return False
                continue
            return False
        return True

    deadline = time.monotonic() + 15
    while not await made():
        if time.monotonic() > deadline:
            raise AssertionError("the reactor did not create its consumer groups")
        await asyncio.sleep(0.05)


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f}s: {what}")
        await asyncio.sleep(0.1)
