"""Per-device order across SuperMQ HEAD's per-operation streams of one service, on a real Redis:
the entries of two streams with the same millisecond id run in ``occurred_at`` order, one at a
time (one lane per device across the service's streams), and a device's events never overtake."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from reactor.supermq.simulator import Simulator
from tests.delivery.helpers import redis_settings, running_reactor, until

PUSH = """
[[rule]]
name = "push"
on = ["config.update"]
[[rule.actions]]
id = "content"
type = "bootstrap.update_content"
config_id = "{{ event.thing_id }}"
patch = { seq = "{{ event.seq | int }}" }
"""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(validate=False) as simulator:
        yield simulator


def _entry(thing_id: str, seq: int, occurred_at: int) -> dict[Any, Any]:
    body = {
        "operation": "bootstrap.config.update",
        "client_id": thing_id,
        "seq": seq,
        "occurred_at": occurred_at,
    }
    return {"data": json.dumps(body)}


async def test_same_millisecond_entries_of_two_operation_streams_run_in_occurred_at_order(
    tmp_path: Path, sim: Simulator, redis_client: aioredis.Redis, unique: str
) -> None:
    family = f"t{unique}"
    # HEAD: Update publishes to events.bootstrap.config.update (no family), UpdateChannelHandler
    # to events.magistrala.bootstrap.config.update: one service, two streams
    first, second = f"events.{family}.bootstrap.config.update", f"events.bootstrap.{unique}.config.update"
    settings = redis_settings(tmp_path, sim, unique, PUSH, family="t")
    redis = settings.redis.model_copy(
        update={"streams": [f"events.{family}.bootstrap.*", f"events.bootstrap.{unique}.*"]}
    )
    settings = settings.model_copy(update={"redis": redis})
    things = [sim.state.add_thing(f"d{i}") for i in range(2)]
    for thing in things:
        sim.state.add_config(thing, f"e-{thing.id}", "k", [], "{}")
    for n, thing in enumerate(things):
        ms = 5000 + n
        # same millisecond on both streams: the ids cannot tell, occurred_at can
        await redis_client.xadd(first, _entry(thing.id, 2, 200), id=f"{ms}-0")
        await redis_client.xadd(first, _entry(thing.id, 4, 400), id=f"{ms}-1")
        await redis_client.xadd(second, _entry(thing.id, 1, 100), id=f"{ms}-0")
        await redis_client.xadd(second, _entry(thing.id, 3, 300), id=f"{ms}-1")
    async with running_reactor(settings) as (_, outcomes, _stop):
        await until(lambda: len(outcomes) == 8)
    for thing in things:
        seqs = [
            int(json.loads(e.detail["content"])["seq"])
            for e in sim.state.effects_of(thing.id)
            if e.kind == "config.update"
        ]
        assert seqs == [1, 2, 3, 4]
