"""Settings for a Redis-fed reactor in a test: a stream family of the test's own, a rule file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.ops.logging import get_logger
from reactor.settings import Settings, load_settings
from reactor.sources.redis_streams import RedisStreamsSource
from reactor.supermq.simulator import Simulator
from tests.conftest import REDIS_URL, REPO


def redis_settings(
    tmp_path: Path,
    sim: Simulator,
    unique: str,
    rules: str,
    *,
    family: str = "t",
    supermq: dict[str, Any] | None = None,
    **sections: Any,
) -> Settings:
    """Streams ``<family><unique>.bootstrap`` read from the start, ``rules`` as the one rule file,
    the simulator as SuperMQ; ``sections`` override whole settings sections."""
    directory = tmp_path / "rules"
    directory.mkdir(exist_ok=True)
    (directory / "r.toml").write_text(rules)
    settings = load_settings(
        None,
        redis={
            "url": REDIS_URL,
            "streams": [f"{family}{unique}.bootstrap"],
            "group": "g",
            "consumer": "c1",
            "start_id": "0",
            "block_ms": 50,
            "dlq_stream": f"{family}{unique}.dlq",
        },
        events={"families": [f"{family}{unique}"]},
        rules={"dir": directory, "reload_interval_s": 0},
        **sections,
    )
    return settings.model_copy(update={"supermq": sim.settings(**(supermq or {}))})


@contextlib.asynccontextmanager
async def running_reactor(
    settings: Settings, **build: Any
) -> AsyncIterator[tuple[Reactor, list[Outcome], asyncio.Event]]:
    """A reactor on the test's Redis streams, running while the block runs: it, its settled
    outcomes and its stop event. ``build`` goes to ``Reactor.build`` (a state store,
    pause_on_login_failure). Leaving the block stops it (within 5 s) and re-raises what killed it."""
    outcomes: list[Outcome] = []
    reactor = Reactor.build(
        settings, RedisStreamsSource(settings.redis), get_logger("test"), observers=[outcomes.append], **build
    )
    stop = asyncio.Event()
    task = asyncio.create_task(reactor.run(stop))
    try:
        yield reactor, outcomes, stop
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await task


async def until(predicate: Callable[[], bool], timeout_s: float = 15) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


async def spawn_daemon(config: Path, log: Path) -> asyncio.subprocess.Process:
    """``reactor --config CONFIG run`` in a process of its own (to kill), its output appended to ``log``."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reactor", "--config", str(config), "run", cwd=REPO, stdout=out, stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
