"""The state store never holds a thing key or an external key in clear: the shipped push rule's
config view is a read, run again on a redelivery, not a recorded step."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from cryptography.fernet import Fernet

from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.delivery.state import MemoryStateStore, SQLiteStateStore
from reactor.ops.logging import get_logger
from reactor.secrets import Sealer, Secret
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


async def test_a_step_whose_secret_cannot_be_opened_runs_again(tmp_path: Path) -> None:
    """After a restart under another key (the default ephemeral one), a recorded step whose result
    holds a sealed secret must not count as done: a later step would be handed the mask and send
    ``***`` to SuperMQ as the device's key (found by a hostile review). It runs again instead."""
    path = tmp_path / "state.sqlite3"
    first = SQLiteStateStore(path, 3600, Sealer(Fernet.generate_key()))
    await first.record("s/1-0", "rule", "config", {"thing_key": Secret("real-thing-key-123")})
    await first.record("s/1-0", "rule", "log", {"said": "plain"})
    await first.close()
    same = SQLiteStateStore(path, 3600, Sealer(Fernet.generate_key()))
    assert set(await same.completed("s/1-0")) == {"rule/log"}  # another key: the secret step is not done
    await same.close()


async def test_a_step_whose_secret_was_recorded_without_a_sealer_runs_again(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "state.sqlite3", 3600)
    await store.record("s/1-0", "rule", "cert", {"client_key": Secret("-----BEGIN PRIVATE KEY-----x")})
    assert await store.completed("s/1-0") == {}
    await store.close()
