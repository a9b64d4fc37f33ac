"""Retries with injected faults: 5xx and timeouts retried with growing delays, 429 waits Retry-After,
4xx not retried, attempts and total time bounded, and the dead-letter entry holds the reason."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest

from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.delivery.retry import RetryPolicy
from reactor.errors import PermanentError, RetryableError
from reactor.ops.logging import get_logger
from reactor.settings import load_settings
from reactor.sources.memory import MemorySource
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator

FAST = RetryPolicy(attempts=5, initial_s=0.05, max_wait_s=2.0, max_total_s=10.0, jitter_s=0.0)


def _gaps(sim: Simulator, path: str) -> list[float]:
    times = [e.at for e in sim.exchanges if e.path == path]
    return [b - a for a, b in itertools.pairwise(times)]


async def _seed(sim: Simulator) -> str:
    thing = sim.state.add_thing("dev")
    sim.state.add_config(thing, "ext", "key", [], "{}")
    await asyncio.sleep(0)
    return thing.id


async def test_5xx_is_retried_with_growing_delays(sim: Simulator, client: SuperMQClient) -> None:
    thing_id = await _seed(sim)
    await client.list_configs()  # log in first, so only the config calls are counted
    path = f"/things/configs/{thing_id}"
    sim.faults.fail_next(3, 503, path_prefix=path)
    config, attempts = await FAST.call(lambda: client.view_config(thing_id))
    assert (config.thing_id, attempts) == (thing_id, 4)
    statuses = [e.status for e in sim.exchanges if e.path == path]
    assert statuses == [503, 503, 503, 200]
    gaps = _gaps(sim, path)
    assert gaps[0] >= 0.05
    assert gaps[1] > gaps[0] * 1.5
    assert gaps[2] > gaps[1] * 1.5


async def test_timeouts_are_retried(sim: Simulator) -> None:
    thing_id = await _seed(sim)
    client = SuperMQClient(sim.settings(timeout_s=0.3))
    try:
        await client.list_configs()
        sim.faults.hang_next(1, 2.0, path_prefix=f"/things/configs/{thing_id}")
        config, attempts = await FAST.call(lambda: client.view_config(thing_id))
    finally:
        await client.aclose()
    assert (config.thing_id, attempts) == (thing_id, 2)


async def test_429_waits_retry_after(sim: Simulator, client: SuperMQClient) -> None:
    thing_id = await _seed(sim)
    await client.list_configs()
    path = f"/things/configs/{thing_id}"
    sim.faults.fail_next(1, 429, retry_after_s=0.6, path_prefix=path)
    _, attempts = await FAST.call(lambda: client.view_config(thing_id))
    assert attempts == 2
    assert _gaps(sim, path)[0] >= 0.6  # not the 0.05 s backoff


@pytest.mark.parametrize("status", [400, 403, 404, 409, 415, 422])
async def test_4xx_is_not_retried(sim: Simulator, client: SuperMQClient, status: int) -> None:
    thing_id = await _seed(sim)
    await client.list_configs()
    path = f"/things/configs/{thing_id}"
    sim.faults.fail_next(1, status, path_prefix=path)
    with pytest.raises(PermanentError) as info:
        await FAST.call(lambda: client.view_config(thing_id))
    assert (info.value.status, info.value.attempts) == (status, 1)
    assert len([e for e in sim.exchanges if e.path == path]) == 1


async def test_attempts_are_bounded(sim: Simulator, client: SuperMQClient) -> None:
    thing_id = await _seed(sim)
    await client.list_configs()
    path = f"/things/configs/{thing_id}"
    sim.faults.fail_next(100, 500, path_prefix=path)
    policy = RetryPolicy(attempts=3, initial_s=0.01, max_wait_s=0.05, max_total_s=10, jitter_s=0)
    with pytest.raises(RetryableError) as info:
        await policy.call(lambda: client.view_config(thing_id))
    assert (info.value.status, info.value.attempts) == (500, 3)
    assert len([e for e in sim.exchanges if e.path == path]) == 3


async def test_total_time_is_bounded(sim: Simulator, client: SuperMQClient) -> None:
    thing_id = await _seed(sim)
    await client.list_configs()
    path = f"/things/configs/{thing_id}"
    sim.faults.fail_next(100, 503, path_prefix=path)
    policy = RetryPolicy(attempts=100, initial_s=0.1, max_wait_s=0.2, max_total_s=0.7, jitter_s=0)
    started = asyncio.get_running_loop().time()
    with pytest.raises(RetryableError) as info:
        await policy.call(lambda: client.view_config(thing_id))
    elapsed = asyncio.get_running_loop().time() - started
    assert elapsed < 0.7 + 0.3  # never sleeps past the budget
    assert 2 <= info.value.attempts < 10


RULE = """
[[rule]]
name = "activate"
on = ["config.create"]
retry = {{ attempts = {attempts}, initial_s = 0.01, max_wait_s = 0.02, jitter_s = 0 }}

[[rule.actions]]
id = "state"
type = "bootstrap.change_state"
config_id = "{{{{ event.thing_id }}}}"
state = 1

[[rule.on_failure]]
type = "log"
message = "gave up on {{{{ event.thing_id }}}}: {{{{ error.message }}}} after {{{{ error.attempts }}}}"
"""


async def _run(sim: Simulator, tmp_path: Path, thing_id: str, attempts: int = 3) -> list[Outcome]:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "r.toml").write_text(RULE.format(attempts=attempts))
    settings = load_settings(None, source="memory", rules={"dir": rules, "reload_interval_s": 0})
    settings = settings.model_copy(update={"supermq": sim.settings()})
    source = MemorySource([("supermq.bootstrap", {"operation": "config.create", "thing_id": thing_id})])
    outcomes: list[Outcome] = []
    reactor = Reactor.build(settings, source, get_logger("test"), observers=[outcomes.append])
    await reactor.run(asyncio.Event())
    return outcomes


async def test_failure_for_good_dead_letters_with_the_reason(sim: Simulator, tmp_path: Path) -> None:
    thing_id = await _seed(sim)
    sim.faults.fail_next(10, 503, path_prefix="/things/state/")
    (outcome,) = await _run(sim, tmp_path, thing_id)
    record = outcome.dead_letter
    assert record is not None
    fields = record.to_fields()
    assert fields["reason"] == "action_failed"
    assert (fields["rule"], fields["action"], fields["status"], fields["attempts"]) == (
        "activate",
        "state (bootstrap.change_state)",
        "503",
        "3",
    )
    assert f"change state of config {thing_id}: HTTP 503" in fields["error"]
    assert json.loads(fields["event"])["thing_id"] == thing_id
    fallback = outcome.rules[0].fallback
    assert fallback[0].ok
    assert fallback[0].result["message"].startswith(f"gave up on {thing_id}: change state")
    assert fallback[0].result["message"].endswith("after 3")
    assert sim.state.configs[thing_id].state == 0


async def test_a_transient_failure_recovers_without_dead_letter(sim: Simulator, tmp_path: Path) -> None:
    thing_id = await _seed(sim)
    sim.faults.fail_next(2, 502, path_prefix="/things/state/")
    (outcome,) = await _run(sim, tmp_path, thing_id)
    assert outcome.dead_letter is None
    assert outcome.rules[0].steps[0].attempts == 3
    assert sim.state.configs[thing_id].state == 1
