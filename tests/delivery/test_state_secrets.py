"""The state store never holds a thing key or an external key in clear: the shipped push rule's
config view is a read, run again on a redelivery, not a recorded step."""

from __future__ import annotations

import asyncio
import json

from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.delivery.state import MemoryStateStore
from reactor.ops.logging import get_logger
from reactor.settings import load_settings
from reactor.sources.memory import MemorySource
from reactor.supermq.simulator import Simulator
from tests.conftest import REPO


async def test_the_push_rule_records_no_key_in_the_state_store() -> None:
    async with Simulator() as sim:
        thing = sim.state.add_thing("gw", key="thing-key-4f1e9d")
        ctrl = sim.state.add_channel("ctrl", metadata={"type": "control"})
        sim.state.add_config(thing, "ext-1", "external-key-77ab", [ctrl.id], "{}", "gw")
        sim.state.connect(thing.id, ctrl.id)
        event = {
            "operation": "thing.bootstrap",
            "thing_id": thing.id,
            "external_id": "ext-1",
            "success": "1",
            "channels": f"[{ctrl.id}]",
            "occurred_at": "1796110324815271082",
        }
        settings = load_settings(None, source="memory", rules={"dir": REPO / "rules", "reload_interval_s": 0})
        settings = settings.model_copy(update={"supermq": sim.settings()})
        state = MemoryStateStore()
        outcomes: list[Outcome] = []
        source = MemorySource([("supermq.bootstrap", event)])
        reactor = Reactor.build(
            settings, source, get_logger("test"), observers=[outcomes.append], state=state
        )
        await asyncio.wait_for(reactor.run(asyncio.Event()), 20)
    [outcome] = outcomes
    assert outcome.dead_letter is None
    assert [r.rule for r in outcome.rules] == ["push-config-on-bootstrap"]
    stored = json.dumps(state.steps, default=str)
    assert state.steps
    assert "thing-key-4f1e9d" not in stored
    assert "external-key-77ab" not in stored
