"""Rule gates: ``throttle`` and ``debounce_s`` per key, in memory and in Redis (across processes),
and the shipped zero-touch rule: a device retrying its bootstrap causes one provisioning."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from reactor.actions.base import ActionRegistry
from reactor.actions.log import NoopAction
from reactor.delivery.executor import Executor
from reactor.delivery.gates import Gates, MemoryGates, RedisGates
from reactor.delivery.retry import RetryPolicy
from reactor.delivery.state import MemoryStateStore
from reactor.errors import RuleSetError
from reactor.events.decode import Decoder
from reactor.rules.loader import load_rules
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator
from tests.provision.test_zero_touch import KEY, layout, registry  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REACTOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/8")


def attempt(i: int, external_id: str = "dev-001") -> Any:
    fields = {"operation": "thing.bootstrap", "external_id": external_id, "success": "0"}
    return Decoder().decode(fields, source="t", stream="mainflux.bootstrap", entry_id=f"{i}-0")


def rules(tmp_path: Path, body: str, reg: ActionRegistry) -> Any:
    directory = tmp_path / f"rules-{uuid.uuid4().hex[:6]}"
    directory.mkdir()
    (directory / "r.toml").write_text(body)
    return load_rules(directory, reg)


THROTTLED = """\
[[rule]]
name = "once"
on = ["thing.bootstrap"]
throttle = { key = "{{ event.external_id }}", per_s = 60 }

[[rule.actions]]
type = "noop"
"""


def fired(outcomes: list[Any]) -> bool:
    return any(not s.skipped for o in outcomes for s in o.steps)


async def test_a_throttled_rule_fires_once_per_key_and_says_why_it_did_not(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, THROTTLED, ActionRegistry([NoopAction()]))
    executor = Executor(lambda: ruleset, RetryPolicy(attempts=1), MemoryStateStore(), gates=MemoryGates())
    results = [await executor.execute(attempt(i)) for i in range(1, 51)]
    assert [fired(r) for r in results] == [True] + [False] * 49
    skipped = results[1][0].steps[0]
    assert skipped.skipped
    assert "throttled: key 'dev-001' fired less than 60s ago" in (skipped.error or "")
    assert fired(await executor.execute(attempt(51, "dev-002"))), "another key has its own window"
    assert fired(await executor.execute(attempt(1), redelivered=True)), "the admitted event is again"


async def test_a_debounced_rule_waits_for_the_key_to_be_quiet(tmp_path: Path) -> None:
    body = THROTTLED.replace('throttle = { key = "{{ event.external_id }}", per_s = 60 }', "debounce_s = 0.3")
    ruleset = rules(tmp_path, body, ActionRegistry([NoopAction()]))
    executor = Executor(lambda: ruleset, RetryPolicy(attempts=1), MemoryStateStore(), gates=MemoryGates())
    assert fired(await executor.execute(attempt(1)))
    for i in range(2, 6):  # every 0.1 s: never quiet for 0.3 s
        await asyncio.sleep(0.1)
        assert not fired(await executor.execute(attempt(i)))
    await asyncio.sleep(0.4)
    assert fired(await executor.execute(attempt(6)))


def test_gate_mistakes_name_the_rule(tmp_path: Path) -> None:
    reg = ActionRegistry([NoopAction()])
    body = THROTTLED.replace("per_s = 60 }", "per_s = 60 }\ndebounce_s = 5")
    with pytest.raises(RuleSetError, match=r"r.toml:1: rule 'once': throttle: throttle.per_s and debounce_s"):
        rules(tmp_path, body, reg)
    with pytest.raises(RuleSetError, match=r"rule 'once': throttle: .*invalid template"):
        rules(tmp_path, THROTTLED.replace("{{ event.external_id }}", "{{ event.external_id "), reg)


async def test_redis_gates_hold_across_processes(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, THROTTLED, ActionRegistry([NoopAction()]))
    prefix = f"test:gates:{uuid.uuid4().hex}"
    clients = [aioredis.Redis.from_url(REDIS_URL, decode_responses=True) for _ in range(2)]
    gates: list[Gates] = [RedisGates(c, prefix) for c in clients]
    try:
        executors = [
            Executor(lambda: ruleset, RetryPolicy(attempts=1), MemoryStateStore(), gates=g) for g in gates
        ]
        outcomes = await asyncio.gather(*(executors[i % 2].execute(attempt(i)) for i in range(1, 51)))
        assert sum(fired(o) for o in outcomes) == 1
    finally:
        for g in gates:
            await g.close()


async def test_the_shipped_rule_provisions_a_retrying_device_once(
    tmp_path: Path,
    layout: Path,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Simulator() as sim:
        client = SuperMQClient(sim.settings(timeout_s=2.0))
        try:
            reg = registry(sim, client, layout)
            shipped = (REPO / "rules" / "zero-touch.toml").read_text()
            assert "enabled = false" in shipped, "off by default"
            ruleset = rules(tmp_path, shipped.replace("enabled = false", "enabled = true"), reg)
            state, gates = MemoryStateStore(), MemoryGates()
            executor = Executor(lambda: ruleset, RetryPolicy(attempts=1), state, gates=gates)
            # the device retries its bootstrap every second
            outcomes = [await executor.execute(attempt(i)) for i in range(1, 51)]
            assert sum(fired(o) for o in outcomes) == 1, "one provisioning, 49 attempts throttled"
            creates = [e for e in sim.state.effects if e.kind in ("thing.create", "config.create")]
            assert [e.kind for e in creates] == ["thing.create", "config.create"]
            served = await client.device_config("dev-001", KEY)
            assert len(served.channels) == 2
        finally:
            await client.aclose()


def test_the_shipped_template_loads() -> None:
    from reactor.provision.templates import load_templates

    templates = load_templates(REPO / "templates")
    assert "sensor" in templates


async def test_memory_gates_are_bounded_by_their_capacity() -> None:
    gates = MemoryGates(capacity=3)
    for n in range(10):
        assert await gates.admit(f"r:k{n}", 60, sliding=False, holder=f"{n}-0")
    assert not await gates.admit("r:k9", 60, sliding=False, holder="x")  # the newest are held
    assert await gates.admit("r:k0", 60, sliding=False, holder="y"), "the oldest were dropped"
    assert len(gates._held) == 3
