"""Delivery guarantees in one process: per-device order, a slow device does not block others,
SuperMQ outages, poison entries, dead-letter replay exactly once, and a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from reactor.app import Reactor
from reactor.commands import replay_dead_letters
from reactor.delivery.executor import begin_trial, trial_begun
from reactor.delivery.lanes import Lanes
from reactor.delivery.outcome import Outcome
from reactor.delivery.state import MemoryStateStore
from reactor.errors import StateStoreError
from reactor.ops.logging import get_logger
from reactor.settings import Settings
from reactor.sources.base import Delivery
from reactor.sources.memory import MemorySource
from reactor.sources.redis_streams import RedisDeadLetters
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator
from tests.conftest import REDIS_URL, REPO
from tests.delivery.helpers import redis_settings, running_reactor, until

PUSH = """
[[rule]]
name = "push"
on = ["config.update"]
retry = {{ attempts = {attempts}, initial_s = 0.02, max_wait_s = 0.2, max_total_s = {total}, jitter_s = 0 }}
[[rule.actions]]
id = "content"
type = "bootstrap.update_content"
config_id = "{{{{ event.thing_id }}}}"
patch = {{ seq = "{{{{ event.seq | int }}}}" }}
"""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(validate=False) as simulator:
        yield simulator


def _settings(tmp_path: Path, sim: Simulator, unique: str, rules: str, **overrides: Any) -> Settings:
    return redis_settings(tmp_path, sim, unique, rules, **overrides)


def _seqs(sim: Simulator, thing_id: str) -> list[int]:
    return [
        int(json.loads(e.detail["content"])["seq"])
        for e in sim.state.effects_of(thing_id)
        if e.kind == "config.update"
    ]


@contextlib.asynccontextmanager
async def _running(settings: Settings, state: MemoryStateStore | None = None) -> AsyncIterator[list[Outcome]]:
    """A reactor on the test's Redis stream, running while the block runs; its settled outcomes."""
    async with running_reactor(settings, state=state) as (_, outcomes, _stop):
        yield outcomes


_until = until


async def test_lanes_keep_order_per_key_and_run_keys_concurrently() -> None:
    seen: list[tuple[str, int]] = []
    gate = asyncio.Event()

    async def run(item: tuple[str, int]) -> None:
        if item[0] == "slow":
            await gate.wait()
        seen.append(item)

    lanes: Lanes[tuple[str, int]] = Lanes(run)
    for n in (3, 1, 2):  # submitted out of order: the lane runs them by order
        lanes.submit("slow", (n, 0), ("slow", n))
    for n in range(1, 4):
        lanes.submit("fast", (n, 0), ("fast", n))
    await _until(lambda: len(seen) == 3)
    assert seen == [("fast", 1), ("fast", 2), ("fast", 3)]  # the slow device blocks nobody else
    gate.set()
    await lanes.join()
    assert [s for s in seen if s[0] == "slow"] == [("slow", 1), ("slow", 2), ("slow", 3)]


async def test_poison_entries_are_dead_lettered(tmp_path: Path, sim: Simulator, unique: str) -> None:
    """Past max_deliveries an entry runs alone once, marked in the state store; delivered again
    after that (the process died while it ran alone: it killed it), it is poison, not run. One
    merely in flight at the crashes runs alone and is acted on (it was dead-lettered as poison)."""
    settings = _settings(tmp_path, sim, unique, PUSH.format(attempts=1, total=1))
    reactor = Reactor.build(settings, MemorySource(), get_logger("test"), state=MemoryStateStore())
    thing = sim.state.add_thing("innocent")
    sim.state.add_config(thing, "ext-innocent", "key", [], "{}")
    innocent = Delivery(
        "x.bootstrap", "4-0", {"operation": "config.update", "thing_id": thing.id, "seq": "1"}, deliveries=11
    )
    (acted,) = await reactor.worker.process([innocent])
    assert acted.dead_letter is None
    assert [e.device for e in sim.state.effects] == [thing.id]
    assert not await trial_begun(reactor.state, innocent.key)  # settled: not what killed a process
    poison = Delivery(
        "x.bootstrap", "5-0", {"operation": "config.update", "thing_id": "t", "seq": "1"}, deliveries=11
    )
    await begin_trial(reactor.state, poison.key)  # it ran alone, and the process died
    (outcome,) = await reactor.worker.process([poison])
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.reason == "poison"
    assert "delivered 11 times" in outcome.dead_letter.error
    assert "died while it ran alone" in outcome.dead_letter.error
    assert outcome.event is None  # never decoded, no rule ran
    assert len(sim.state.effects) == 1
    await reactor.client.aclose()


async def test_outage_retries_one_device_while_others_flow(
    redis_client: aioredis.Redis, tmp_path: Path, sim: Simulator, unique: str
) -> None:
    settings = _settings(tmp_path, sim, unique, PUSH.format(attempts=60, total=20))
    stream = settings.redis.streams[0]
    things = [sim.state.add_thing(f"d{i}") for i in range(6)]
    for thing in things:
        sim.state.add_config(thing, f"e-{thing.id}", "k", [], "{}")
    down = things[0]
    sim.faults.outage(1.5, path_prefix=f"/things/configs/{down.id}")
    for seq in (1, 2, 3):
        for thing in things:
            await redis_client.xadd(
                stream, {"operation": "config.update", "thing_id": thing.id, "seq": str(seq)}
            )
    async with _running(settings, MemoryStateStore()) as outcomes:
        await _until(lambda: all(_seqs(sim, t.id) == [1, 2, 3] for t in things[1:]), 1.2)  # in the outage
        assert _seqs(sim, down.id) == []
        await _until(lambda: _seqs(sim, down.id) == [1, 2, 3])  # after it: retried, in order
        await _until(lambda: len(outcomes) == 18)
    assert all(o.dead_letter is None for o in outcomes)
    assert max(s.attempts for o in outcomes for r in o.rules for s in r.steps) > 1
    assert (await redis_client.xpending(stream, "g"))["pending"] == 0


async def test_an_outage_beyond_the_retry_budget_is_dead_lettered_with_the_reason(
    redis_client: aioredis.Redis, tmp_path: Path, sim: Simulator, unique: str
) -> None:
    settings = _settings(tmp_path, sim, unique, PUSH.format(attempts=3, total=5))  # outage: Retry-After 1 s
    thing = sim.state.add_thing("d")
    sim.state.add_config(thing, "e", "k", [], "{}")
    sim.faults.outage(30, path_prefix=f"/things/configs/{thing.id}")
    stream = settings.redis.streams[0]
    await redis_client.xadd(stream, {"operation": "config.update", "thing_id": thing.id, "seq": "1"})
    async with _running(settings, MemoryStateStore()) as outcomes:
        await _until(lambda: len(outcomes) == 1)
    (record,) = await RedisDeadLetters(redis_client, settings.redis.dlq_stream).records()
    assert record.fields["reason"] == "action_failed"
    assert record.fields["status"] == "503"
    assert record.fields["attempts"] == "3"
    assert record.fields["rule"] == "push"
    assert "HTTP 503" in record.fields["error"]


TWO_STEPS = """
[[rule]]
name = "onboard"
on = ["config.create"]
retry = { attempts = 1 }
[[rule.actions]]
id = "connect"
type = "things.connect"
thing_id = "{{ event.thing_id }}"
channel_ids = ["{{ event.channel }}"]
[[rule.actions]]
id = "activate"
type = "bootstrap.change_state"
config_id = "{{ event.thing_id }}"
state = 1
"""


async def test_dlq_replay_succeeds_exactly_once_after_the_cause_is_fixed(
    redis_client: aioredis.Redis, tmp_path: Path, sim: Simulator, unique: str
) -> None:
    settings = _settings(tmp_path, sim, unique, TWO_STEPS, state={"backend": "redis"})
    thing, channel = sim.state.add_thing("d"), sim.state.add_channel("c")
    stream = settings.redis.streams[0]
    await redis_client.xadd(
        stream, {"operation": "config.create", "thing_id": thing.id, "channel": channel.id}
    )
    # No bootstrap config yet: connect succeeds, activate fails with 404 → dead-lettered.
    async with _running(settings) as outcomes:
        await _until(lambda: len(outcomes) == 1)
    dead = RedisDeadLetters(redis_client, settings.redis.dlq_stream)
    (record,) = await dead.records()
    assert (record.fields["action"], record.fields["status"]) == ("activate (bootstrap.change_state)", "404")

    # The cause, fixed. (Listing the channel the rule connected would make v0.14.0's activation
    # answer 503 for good: it connects every channel of the config and refuses an existing pair.)
    sim.state.add_config(thing, "e", "k", [], "{}")
    client = SuperMQClient(settings.supermq)
    code = await replay_dead_letters(settings, dead, get_logger("test"), ids=[record.id], client=client)
    assert code == 0
    assert sim.state.configs[thing.id].state == 1
    kinds = [e.kind for e in sim.state.effects_of(thing.id)]
    assert kinds.count("connect") == 1  # the step that had completed was not repeated
    assert kinds.count("config.state") == 1
    assert await dead.records() == []
    client = SuperMQClient(settings.supermq)
    assert await replay_dead_letters(settings, dead, get_logger("test"), client=client) == 0  # nothing left
    assert [e.kind for e in sim.state.effects_of(thing.id)] == kinds


async def test_sigterm_mid_batch_exits_zero_with_nothing_lost_or_repeated(
    redis_client: aioredis.Redis, tmp_path: Path, sim: Simulator, unique: str
) -> None:
    settings = _settings(tmp_path, sim, unique, PUSH.format(attempts=3, total=5), state={"backend": "redis"})
    stream = settings.redis.streams[0]
    things = [sim.state.add_thing(f"d{i}") for i in range(20)]
    for thing in things:
        sim.state.add_config(thing, f"e-{thing.id}", "k", [], "{}")
    for seq in range(1, 11):
        for thing in things:
            await redis_client.xadd(
                stream, {"operation": "config.update", "thing_id": thing.id, "seq": str(seq)}
            )
    sim.faults.latency_ms = 100  # slow enough that SIGTERM lands mid-batch
    config = tmp_path / "reactor.toml"
    urls = "\n".join(f'{s}_url = "{sim.url(s)}"' for s in ("users", "things", "bootstrap", "certs", "http"))
    config.write_text(f"""
[redis]
url = "{REDIS_URL}"
streams = ["{stream}"]
group = "g"
start_id = "0"
block_ms = 50
batch_size = 10
dlq_stream = "{settings.redis.dlq_stream}"
[events]
families = {json.dumps(settings.events.families)}
[rules]
dir = "{settings.rules.dir}"
[state]
backend = "redis"
[ops]
listen = ""
[worker]
grace_s = 10.0
max_in_flight = 20
[supermq]
{urls}
identity = "{sim.state.identity}"
secret = "{sim.state.secret}"
""")

    async def run_once(stop_after_effects: int | None) -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reactor",
            "--config",
            str(config),
            "run",
            cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        if stop_after_effects is None:
            await _until(lambda: all(_seqs(sim, t.id) == list(range(1, 11)) for t in things), 60)
        else:
            await _until(lambda: len(sim.state.effects) >= stop_after_effects, 60)
        proc.send_signal(signal.SIGTERM)
        return await proc.wait()

    assert await run_once(stop_after_effects=20) == 0
    applied = sum(len(_seqs(sim, t.id)) for t in things)
    assert 20 <= applied < 200, "SIGTERM landed mid-run"
    assert (await redis_client.xpending(stream, "g"))["pending"] == 0  # in-flight work finished and was acked
    assert await run_once(stop_after_effects=None) == 0
    for thing in things:
        assert _seqs(sim, thing.id) == list(range(1, 11))  # every event once, in order


async def test_a_malformed_binary_body_is_dead_lettered_replayably(
    tmp_path: Path, sim: Simulator, unique: str
) -> None:
    """A protobuf body that does not decode keeps its bytes (base64): replay gets them back."""
    from reactor.sources.base import Record

    settings = _settings(tmp_path, sim, unique, PUSH.format(attempts=1, total=1))
    reactor = Reactor.build(settings, MemorySource(), get_logger("test"))
    body = b"\x32\x05\xff\xfe\x00\x01\x02"  # field 6, but not JSON
    (outcome,) = await reactor.worker.process([Delivery("x.bootstrap", "7-0", body)])
    assert outcome.dead_letter is not None
    fields = outcome.dead_letter.to_fields()
    assert "body_b64" in json.loads(fields["event"])
    assert Record("1-0", fields).delivery().payload == body
    await reactor.client.aclose()


class _FlakyState(MemoryStateStore):
    """A state store that is down for its first ``down`` writes, or broken for good."""

    def __init__(self, down: int = 0, broken: bool = False) -> None:
        super().__init__()
        self.down = down
        self.broken = broken

    async def record(self, event_key: str, rule: str, action_id: str, result: Any) -> None:
        if self.broken:
            raise RuntimeError("a bug in the state store")
        if self.down > 0:
            self.down -= 1
            raise StateStoreError("state store: connection refused")
        await super().record(event_key, rule, action_id, result)


async def _onboard_one(
    tmp_path: Path, sim: Simulator, unique: str, state: MemoryStateStore
) -> tuple[Outcome, str]:
    """One config.create through TWO_STEPS with ``state`` as the state store; the outcome, thing id."""
    settings = _settings(tmp_path, sim, unique, TWO_STEPS)
    thing, channel = sim.state.add_thing("d"), sim.state.add_channel("c")
    sim.state.add_config(thing, "e", "k", [], "{}")
    reactor = Reactor.build(settings, MemorySource(), get_logger("test"), state=state)
    event = {"operation": "config.create", "thing_id": thing.id, "channel": channel.id}
    (outcome,) = await reactor.worker.process([Delivery(f"t{unique}.bootstrap", "1-0", event)])
    await reactor.client.aclose()
    return outcome, thing.id


async def test_an_unavailable_state_store_holds_the_event_until_it_is_back(
    tmp_path: Path, sim: Simulator, unique: str
) -> None:
    state = _FlakyState(down=2)
    outcome, thing_id = await _onboard_one(tmp_path, sim, unique, state)
    assert outcome.dead_letter is None
    assert all(r.failed is None for r in outcome.rules)
    assert state.down == 0  # it was tried until the store came back
    assert sim.state.configs[thing_id].state == 1


async def test_a_bug_under_an_event_dead_letters_it_with_the_reason(
    tmp_path: Path, sim: Simulator, unique: str
) -> None:
    outcome, _ = await _onboard_one(tmp_path, sim, unique, _FlakyState(broken=True))
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.reason == "internal_error"
    assert "RuntimeError: a bug in the state store" in outcome.dead_letter.error


async def test_a_reclaimed_entry_running_alone_does_not_hold_up_the_liveness_lease(
    tmp_path: Path, sim: Simulator, unique: str
) -> None:
    """``maintain`` renews the consumer's liveness lease: a reclaimed entry past max_deliveries
    runs alone beside it, not inside it (else peers would take this live consumer's entries)."""
    thing = sim.state.add_thing("reclaimed")
    sim.state.add_config(thing, "ext-reclaimed", "key", [], "{}")
    reclaimed = Delivery(
        "x.bootstrap", "7-0", {"operation": "config.update", "thing_id": thing.id, "seq": "1"}, deliveries=11
    )
    rounds: list[float] = []

    class Reclaiming(MemorySource):
        maintain_interval_s = 0.05

        async def maintain(self) -> list[Delivery]:
            rounds.append(asyncio.get_running_loop().time())
            return [reclaimed] if len(rounds) == 1 else []

    settings = _settings(tmp_path, sim, unique, PUSH.format(attempts=1, total=5))
    reactor = Reactor.build(settings, Reclaiming(finite=False), get_logger("test"), state=MemoryStateStore())
    sim.faults.latency_ms = 400  # the run alone takes ~0.8 s (a read and a write)
    stop = asyncio.Event()
    task = asyncio.create_task(reactor.run(stop))
    try:
        await until(lambda: bool(sim.state.effects), timeout_s=10)
        assert len(rounds) >= 8, rounds  # maintain went on every 50 ms while it ran
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task
        await reactor.client.aclose()
