"""SuperMQ HEAD's event shapes end to end on a real Redis: per-operation streams (one found at
start, one created while the reactor runs, one later still), the one ``data`` field, ``client_id``,
``channels`` as a JSON array, ``state`` as State.String() and the ``"domain_id "`` key, found
through a glob pattern, drive the shipped rules; the simulator's state afterwards is exactly what
the rules asked for.

The simulator answers as the ``things`` profile (Magistrala v0.14): HEAD's events drive any
profile. tests/e2e/test_head_clients.py runs them against HEAD's own API (the ``clients`` profile).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from reactor.settings import load_settings
from reactor.supermq.simulator import Simulator
from reactor.supermq.simulator.contract import Contract
from tests.conftest import REDIS_URL, REPO
from tests.delivery.helpers import running_reactor, until


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(contract=Contract()) as simulator:
        yield simulator


def _data(**values: Any) -> dict[Any, Any]:
    """pkg/events/redis/publisher.go: one field ``data``, the JSON of Encode() + occurred_at."""
    return {"data": json.dumps(values, separators=(",", ":"))}


def head_streams(prefix: str, family: str) -> dict[str, object]:
    """``[redis]`` for HEAD's per-operation streams under ``prefix``, found by one glob pattern."""
    return {
        "url": REDIS_URL,
        "streams": [f"{prefix}.*"],
        "group": "reactor",
        "consumer": "c1",
        "start_id": "0",
        "dlq_stream": f"{family}.dlq",
        "discover_interval_s": 0.1,
    }


async def test_head_shaped_events_found_by_a_pattern_drive_onboarding_and_push(
    redis_client: aioredis.Redis, sim: Simulator, unique: str, tmp_path: Path
) -> None:
    family = f"e2e{unique}"
    prefix = f"events.{family}.bootstrap"  # HEAD: events.magistrala.bootstrap.<entity>.<op>
    thing = sim.state.add_thing("gateway")
    ctrl, data = sim.state.add_channel("control", metadata={"type": "control"}), sim.state.add_channel("data")
    sim.state.add_config(thing, "FF-41", "ext-key", [ctrl.id, data.id], '{"mode": "eco"}', "gateway")
    domain = "4d3c2b1a-0000-4000-8000-00000000d001"
    settings = load_settings(
        None,
        redis=head_streams(prefix, family),
        worker={"block_ms": 50},
        events={"families": [family]},
        rules={"dir": REPO / "rules", "reload_interval_s": 0},
    )
    settings = settings.model_copy(update={"supermq": sim.settings()})
    await redis_client.xadd(  # bootstrap/events/producer/events.go configEvent
        f"{prefix}.config.create",
        _data(
            operation="bootstrap.config.create",
            state="0",
            client_id=thing.id,
            content='{"mode": "eco"}',
            **{"domain_id ": domain},
            name="gateway",
            external_id="FF-41",
            channels=[ctrl.id, data.id],
            occurred_at=1796110400000000001,
        ),
    )
    with capture_logs() as logs:
        async with running_reactor(settings) as (reactor, outcomes, _stop):
            await until(lambda: len(outcomes) == 1)
            await (
                redis_client.xadd(  # a stream new to the reactor: found by the next scan, read from its start
                    f"{prefix}.client.bootstrap",
                    _data(
                        operation="bootstrap.client.bootstrap",
                        external_id="FF-41",
                        success=True,
                        client_id=thing.id,
                        **{"domain_id ": domain},
                        channels=[ctrl.id, data.id],
                        occurred_at=1796110400000000002,
                    ),
                )
            )
            await until(lambda: len(outcomes) == 2)
            await redis_client.xadd(  # removeHandlerEvent: config_id holds the channel id
                f"{prefix}.channel.remove_handler",
                _data(
                    operation="bootstrap.channel.remove_handler",
                    config_id=data.id,
                    occurred_at=1796110400000000003,
                ),
            )
            await until(lambda: len(outcomes) == 3)
            streams = reactor.source.streams  # type: ignore[attr-defined]
    joined = [(e["stream"], e["pattern"]) for e in logs if e["event"] == "redis.stream_joined"]
    assert joined == [(s, f"{prefix}.*") for s in streams]  # each stream joined is said, once

    assert list(streams) == [
        f"{prefix}.config.create",
        f"{prefix}.client.bootstrap",
        f"{prefix}.channel.remove_handler",
    ]
    assert [o.dead_letter for o in outcomes] == [None, None, None]
    assert [[r.rule for r in o.rules] for o in outcomes] == [
        ["onboard-new-config"],
        ["push-config-on-bootstrap"],
        ["drop-removed-channel"],
    ]
    assert [o.event.domain_id for o in outcomes if o.event is not None][:2] == [domain, domain]
    config = sim.state.configs[thing.id]
    assert config.state == 1
    assert config.channels == [ctrl.id]
    assert json.loads(config.content) == {
        "mode": "eco",
        "reactor": {"bootstrapped": True, "bootstrapped_at_ns": 1796110400000000002},
    }
    assert sim.state.connections == {(thing.id, ctrl.id)}
    assert [(m["channel"], json.loads(m["payload"])) for m in sim.state.messages] == [
        (ctrl.id, [{"n": "config", "vs": "updated"}])
    ]
    for stream in streams:
        assert (await redis_client.xpending(stream, "reactor"))["pending"] == 0
    assert sim.contract is not None
    assert sim.contract.violations == []
