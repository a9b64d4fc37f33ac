"""The onboarding flow end to end: events XADDed to a real Redis drive the shipped rules against the
SuperMQ simulator, and the simulator's state afterwards is exactly what the rules asked for."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.ops.logging import get_logger
from reactor.settings import load_settings
from reactor.sources.redis_streams import RedisStreamsSource
from reactor.supermq.simulator import Simulator
from reactor.supermq.simulator.contract import Contract
from tests.conftest import REDIS_URL, REPO


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(contract=Contract()) as simulator:
        yield simulator


async def test_onboarding_flow(redis_client: aioredis.Redis, sim: Simulator, unique: str) -> None:
    family = f"e2e{unique}"
    stream = f"{family}.bootstrap"
    thing = sim.state.add_thing("gateway")
    ctrl, data = sim.state.add_channel("control", metadata={"type": "control"}), sim.state.add_channel("data")
    sim.state.add_config(thing, "FF-41", "ext-key", [ctrl.id, data.id], '{"mode": "eco"}', "gateway")

    settings = load_settings(
        None,
        redis={
            "url": REDIS_URL,
            "streams": [stream],
            "group": "reactor",
            "consumer": "c1",
            "start_id": "0",
            "block_ms": 50,
            "dlq_stream": f"{family}.dlq",
        },
        events={"families": [family]},
        rules={"dir": REPO / "rules", "reload_interval_s": 0},
    )
    settings = settings.model_copy(update={"supermq": sim.settings()})
    await redis_client.xadd(
        stream,
        {  # Magistrala v0.14: flat fields, channels as "[a,b]"
            "operation": "config.create",
            "thing_id": thing.id,
            "external_id": "FF-41",
            "state": "0",
            "channels": f"[{ctrl.id},{data.id}]",
            "content": '{"mode": "eco"}',
            "occurred_at": "1693313286544243035",
        },
    )
    await redis_client.xadd(
        stream,
        {
            "data": json.dumps(
                {  # v0.15+: one data field, prefixed operation
                    "operation": "bootstrap.thing.bootstrap",
                    "thing_id": thing.id,
                    "external_id": "FF-41",
                    "success": True,
                    "channels": [ctrl.id, data.id],  # a successful bootstrap carries the config
                    "occurred_at": 1693339161600369325,
                }
            )
        },
    )

    outcomes: list[Outcome] = []
    reactor = Reactor.build(
        settings, RedisStreamsSource(settings.redis), get_logger("test"), observers=[outcomes.append]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(reactor.run(stop))
    async with asyncio.timeout(15):
        while len(outcomes) < 2:
            await asyncio.sleep(0.02)
        await redis_client.xadd(
            stream,
            {"operation": "group.remove_handler", "config_id": data.id, "occurred_at": "1693339468719177463"},
        )
        while len(outcomes) < 3:
            await asyncio.sleep(0.02)
    stop.set()
    await task

    assert [o.dead_letter for o in outcomes] == [None, None, None]
    assert [[r.rule for r in o.rules] for o in outcomes] == [
        ["onboard-new-config"],
        ["push-config-on-bootstrap"],
        ["drop-removed-channel"],
    ]
    config = sim.state.configs[thing.id]
    assert config.state == 1
    assert config.channels == [ctrl.id]
    assert json.loads(config.content) == {
        "mode": "eco",
        "reactor": {"bootstrapped": True, "bootstrapped_at_ns": 1693339161600369325},
    }
    assert sim.state.connections == {(thing.id, ctrl.id)}
    assert [(m["channel"], json.loads(m["payload"])) for m in sim.state.messages] == [
        (ctrl.id, [{"n": "config", "vs": "updated"}])
    ]
    effects = [(e.kind, e.detail.get("channel")) for e in sim.state.effects_of(thing.id)]
    connects, effects = sorted(effects[:2]), effects[2:]  # activation connects in no set order
    assert connects == sorted([("connect", ctrl.id), ("connect", data.id)])
    assert effects == [
        ("config.state", None),  # bootstrap.change_state 1 (it connected the thing itself)
        ("config.update", None),  # bootstrap.update_content
        ("message.publish", ctrl.id),  # message.publish as the thing
        ("disconnect", data.id),
        ("config.connections", None),  # drop_channel on an active config
    ]
    assert (await redis_client.xpending(stream, "reactor"))["pending"] == 0
    assert sim.contract is not None
    assert sim.contract.violations == []
