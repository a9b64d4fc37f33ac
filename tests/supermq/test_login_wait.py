"""One login at a time, bounded: calls waiting for a login that fails share its failure at once
instead of each logging in again in turn (a hung users service held every call on the token
lock, one timeout after another); and without the daemon's breaker the calls fail as before."""

from __future__ import annotations

import asyncio
import time

import pytest

from reactor.errors import RetryableError, SuspendedError
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator


async def test_calls_waiting_for_a_hung_login_fail_together(sim: Simulator) -> None:
    client = SuperMQClient(sim.settings(timeout_s=0.3))
    sim.faults.hang_next(100, 1.0, path_prefix="/users")
    try:
        started = time.monotonic()
        results = await asyncio.gather(*(client.list_configs() for _ in range(10)), return_exceptions=True)
        took = time.monotonic() - started
        assert all(isinstance(r, RetryableError) for r in results), results
        assert took < 1.0, f"the calls queued behind each other's logins for {took:.1f}s"
        assert not client.auth.open  # not armed: a one-shot command fails, it does not pause
        await asyncio.sleep(1.0)  # the hung requests are journaled when their hang ends
        assert sum(e.path == "/users/tokens/issue" for e in sim.exchanges) == 1
        sim.faults.recover()
        assert (await client.list_configs()).total == 0  # the next call logs in
    finally:
        await client.aclose()


async def test_an_armed_breaker_opens_on_a_refused_login_and_a_probe_closes_it(sim: Simulator) -> None:
    client = SuperMQClient(sim.settings(secret="wrong", timeout_s=1.0))
    client.auth.armed = True
    try:
        with pytest.raises(SuspendedError, match="SuperMQ login paused: users token: HTTP"):
            await client.list_configs()
        assert client.auth.reason.startswith("users token: HTTP")  # open, and why
        logins = sum(e.path == "/users/tokens/issue" for e in sim.exchanges)
        with pytest.raises(SuspendedError):
            await client.list_configs()  # at once: no login while the breaker is open
        assert sum(e.path == "/users/tokens/issue" for e in sim.exchanges) == logins
        sim.state.secret = "wrong"
        async with asyncio.timeout(5):
            await client.auth.resume(asyncio.Event())  # a probe login succeeds
        assert not client.auth.open
        assert (await client.list_configs()).total == 0
    finally:
        await client.aclose()
