"""SuperMQ's login is not the event's fault. A hung users service does not serialise every action
on the token lock and eat the events' retry budgets; wrong credentials do not dead-letter every
event: the daemon pauses consuming (the events in hand stay pending), says so on /readyz and in
a metric, and resumes once a probe login succeeds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.settings import Settings
from reactor.supermq.simulator import Simulator
from tests.delivery.helpers import redis_settings, running_reactor, until

ACTIVATE = """
[[rule]]
name = "activate"
on = ["config.create"]
retry = { attempts = 3, initial_s = 0.05, max_wait_s = 0.2, max_total_s = 1.0, jitter_s = 0 }
[[rule.actions]]
id = "activate"
type = "bootstrap.change_state"
config_id = "{{ event.thing_id }}"
state = 1
"""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(validate=False) as simulator:
        yield simulator


def _settings(tmp_path: Path, sim: Simulator, unique: str, **supermq: Any) -> Settings:
    return redis_settings(tmp_path, sim, unique, ACTIVATE, supermq={"timeout_s": 0.3, **supermq})


@contextlib.asynccontextmanager
async def _daemon(settings: Settings) -> AsyncIterator[tuple[Reactor, list[Outcome], asyncio.Event]]:
    """The daemon's reactor (it pauses on a failed login) running while the block runs."""
    async with running_reactor(settings, pause_on_login_failure=True) as running:
        yield running


_until = until


async def _configs(sim: Simulator, redis_client: aioredis.Redis, stream: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        thing = sim.state.add_thing(f"d{i}")
        sim.state.add_config(thing, f"e{i}", "k", [], "{}")
        await redis_client.xadd(stream, {"operation": "config.create", "thing_id": thing.id})
        ids.append(thing.id)
    return ids


async def test_a_hung_login_holds_events_instead_of_dead_lettering_them(
    redis_client: aioredis.Redis, tmp_path: Path, sim: Simulator, unique: str
) -> None:
    settings = _settings(tmp_path, sim, unique)
    sim.faults.hang_next(1000, 5.0, path_prefix="/users")  # the users service answers nothing ...
    ids = await _configs(sim, redis_client, settings.redis.streams[0], 10)
    async with _daemon(settings) as (reactor, outcomes, _):
        await _until(lambda: reactor.client.auth.open, 5)
        assert (await reactor.ready())["supermq_login"] is False
        await asyncio.sleep(1.5)  # ... for longer than the events' retry budget (1 s)
        sim.faults.recover()
        await _until(lambda: len(outcomes) == 10)
        assert (await reactor.ready())["supermq_login"] is True
    assert [o.dead_letter for o in outcomes] == [None] * 10
    assert all(sim.state.configs[i].state == 1 for i in ids)


async def test_wrong_credentials_pause_consuming_until_a_login_succeeds(
    redis_client: aioredis.Redis, tmp_path: Path, sim: Simulator, unique: str
) -> None:
    settings = _settings(tmp_path, sim, unique, secret="not-the-secret")
    stream = settings.redis.streams[0]
    ids = await _configs(sim, redis_client, stream, 3)
    async with _daemon(settings) as (reactor, outcomes, _):
        await _until(lambda: reactor.client.auth.open, 5)
        await asyncio.sleep(0.3)  # a read already under way has returned
        ids += await _configs(sim, redis_client, stream, 2)  # not read while paused
        await asyncio.sleep(0.5)
        assert outcomes == []  # nothing dead-lettered, nothing acked
        assert (await redis_client.xpending(stream, "g"))["pending"] == 3
        assert (await reactor.ready())["supermq_login"] is False
        assert b"reactor_supermq_login_paused 1.0" in reactor.metrics.render()
        sim.state.secret = "not-the-secret"  # the operator fixes the account
        await _until(lambda: len(outcomes) == 5)
        assert b"reactor_supermq_login_paused 0.0" in reactor.metrics.render()
    assert [o.dead_letter for o in outcomes] == [None] * 5
    assert all(sim.state.configs[i].state == 1 for i in ids)
    assert await redis_client.xlen(settings.redis.dlq_stream) == 0


async def test_a_paused_daemon_stops_at_once_leaving_its_events_pending(
    redis_client: aioredis.Redis, tmp_path: Path, sim: Simulator, unique: str
) -> None:
    settings = _settings(tmp_path, sim, unique, secret="not-the-secret")
    stream = settings.redis.streams[0]
    await _configs(sim, redis_client, stream, 3)
    async with _daemon(settings) as (reactor, outcomes, stop):
        await _until(lambda: reactor.client.auth.open, 5)
        stop.set()
    assert outcomes == []
    assert (await redis_client.xpending(stream, "g"))["pending"] == 3  # redelivered on the next start
