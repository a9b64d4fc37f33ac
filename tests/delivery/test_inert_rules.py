"""Rules that only do ``noop`` (issue 17's fast path): an event whose candidate rules are all
inert is run where it is dispatched, with no lane and nothing awaited. What it must not change:
every event still ends acted on, with the same steps, counted and observed as when its rules
ran in a lane; a device's events still run in order; a rule that acts still runs in a lane."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from reactor.delivery.executor import Executor
from reactor.delivery.outcome import Outcome
from reactor.supermq.simulator import Simulator
from tests.delivery.helpers import redis_settings, running_reactor, until

RULES = """
[[rule]]
name = "created"
on = ["config.create"]
when = ["event.state == 0"]
[[rule.actions]]
id = "mark"
type = "noop"
[[rule.actions]]
id = "again"
type = "noop"

[[rule]]
name = "any-create"
on = ["config.create"]
[[rule.actions]]
type = "noop"

[[rule]]
name = "removed"
on = ["config.remove"]
[[rule.actions]]
type = "log"
message = "removed {{ event.thing_id }}"
"""
EVENTS = 120


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(validate=False) as simulator:
        yield simulator


def _entries() -> list[dict[Any, Any]]:
    out: list[dict[Any, Any]] = []
    for i in range(EVENTS):
        op = "config.remove" if i % 10 == 9 else "config.create"
        out.append({"operation": op, "thing_id": f"d{i % 40}", "state": str(i % 2), "seq": str(i)})
    return out


def _shape(outcome: Outcome) -> tuple[Any, ...]:
    rules = [
        (r.rule, r.failed, [(s.action_id, s.type, s.ok, s.attempts, s.skipped, s.params) for s in r.steps])
        for r in outcome.rules
    ]
    event = outcome.event
    return (event.fields["seq"] if event else None, rules, outcome.dead_letter)


async def _run(
    tmp_path: Path, sim: Simulator, redis_client: aioredis.Redis, unique: str, batch: int
) -> tuple[list[Outcome], Any, int]:
    (tmp_path / unique).mkdir()
    settings = redis_settings(tmp_path / unique, sim, unique, RULES, worker={"batch_size": batch})
    stream = settings.redis.streams[0]
    for entry in _entries():
        await redis_client.xadd(stream, entry)
    async with running_reactor(settings) as (reactor, outcomes, _):
        submitted = 0
        submit = reactor.worker._lanes.submit

        def counting(*args: Any) -> None:
            nonlocal submitted
            submitted += 1
            submit(*args)

        reactor.worker._lanes.submit = counting  # type: ignore[method-assign,assignment]
        await until(lambda: len(outcomes) == EVENTS)
        counters = reactor.worker.counters
    pending = await redis_client.xpending(stream, "g")
    assert pending["pending"] == 0  # every entry acked
    return outcomes, counters, submitted


async def test_inert_rules_end_as_they_did_in_a_lane_and_in_order(
    tmp_path: Path,
    sim: Simulator,
    redis_client: aioredis.Redis,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, fast_counts, fast_submitted = await _run(tmp_path, sim, redis_client, f"{unique}a", 100)
    monkeypatch.setattr(Executor, "execute_inert", lambda self, event: None)
    slow, slow_counts, slow_submitted = await _run(tmp_path, sim, redis_client, f"{unique}b", 100)

    by_seq = sorted(map(_shape, fast), key=lambda s: int(s[0]))
    assert by_seq == sorted(map(_shape, slow), key=lambda s: int(s[0]))
    assert fast_counts == slow_counts
    assert fast_counts.events == EVENTS
    assert fast_counts.dead_lettered == 0
    created = [o for o in fast if o.event is not None and o.event.operation == "config.create"]
    even = [o for o in created if o.event is not None and o.event.fields["state"] == 0]
    assert {len(o.rules) for o in even} == {2}  # both rules, the conditional one's two steps
    assert all(len(o.rules[0].steps) == 2 for o in even)
    # The inert events of a batch of 100 over 40 devices went nowhere near a lane, the others did:
    # the log rule's events, and each device's events that share a batch with another of its own.
    assert slow_submitted == EVENTS
    assert 0 < fast_submitted < EVENTS
    for device in {o.event.device for o in fast if o.event is not None}:
        seqs = [int(o.event.fields["seq"]) for o in fast if o.event is not None and o.event.device == device]
        assert seqs == sorted(seqs), device  # settled in stream order, lane or not


async def test_an_event_alone_of_its_device_in_each_batch_needs_no_lane(
    tmp_path: Path, sim: Simulator, redis_client: aioredis.Redis, unique: str
) -> None:
    outcomes, counts, submitted = await _run(tmp_path, sim, redis_client, unique, 10)
    assert counts.events == EVENTS
    removes = sum(1 for o in outcomes if o.event is not None and o.event.operation == "config.remove")
    assert submitted == removes  # batches of 10 over 40 devices: only the log rule's events
