"""The same events, published the way SuperMQ publishes them to Redis, NATS JetStream and RabbitMQ,
drive the same rules to the same effects; a message taken by a process that died is applied by
the next one; a NATS server killed and restarted mid-run loses nothing. Completed steps go to a
real state store (SQLite, as `reactor run` keeps them by default)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.delivery.state import SQLiteStateStore, StateStore
from reactor.events.protowire import wrap_payload
from reactor.ops.logging import get_logger
from reactor.settings import NatsSettings, Settings, load_settings
from reactor.sources.nats_jetstream import NatsJetStreamSource
from reactor.supermq.simulator import Simulator
from tests.servers import PrivateNats
from tests.sources.backends import BACKENDS, Backend

RULE = """
[[rule]]
name = "push-seq"
on = ["config.update"]
[[rule.actions]]
type = "bootstrap.update_content"
config_id = "{{ event.thing_id }}"
patch = { seq = "{{ event.seq | int }}" }
"""


@pytest.fixture(params=["redis", "nats", "rabbitmq"])
async def backend(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[Backend]:
    chosen = BACKENDS[request.param](unique)
    await chosen.setup()
    yield chosen
    await chosen.teardown()


def _state(tmp_path: Path) -> StateStore:
    return SQLiteStateStore(tmp_path / "state" / "steps.db", retention_s=3600)


def _settings(rules: Path, sim: Simulator) -> Settings:
    settings = load_settings(
        None, rules={"dir": rules, "reload_interval_s": 0}, redis={"block_ms": 50}, ops={"audit": False}
    )
    return settings.model_copy(update={"supermq": sim.settings()})


def _update(thing_id: str, seq: int) -> dict[str, str | int]:
    return {
        "operation": "config.update",
        "thing_id": thing_id,
        "seq": str(seq),
        "occurred_at": 1697041066438195084,
    }


async def _run(reactor: Reactor, outcomes: list[Outcome], count: int, timeout_s: float = 30) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(reactor.run(stop))
    try:
        async with asyncio.timeout(timeout_s):
            while len(outcomes) < count:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task


def _applied(sim: Simulator) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for effect in sim.state.effects:
        out.setdefault(sim.state.things[effect.device].name, []).append(
            json.loads(effect.detail["content"])["seq"]
        )
    return out


async def test_every_backend_drives_the_same_effects(backend: Backend, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(RULE)
    async with Simulator(validate=False) as sim:
        things = {f"dev{i}": sim.state.add_thing(f"dev{i}") for i in range(3)}
        for thing in things.values():
            sim.state.add_config(thing, f"e-{thing.name}", "k", [], "{}")
        for seq in range(1, 5):
            for thing in things.values():
                await backend.publish(backend.stream(), _update(thing.id, seq))
        outcomes: list[Outcome] = []
        reactor = Reactor.build(
            _settings(rules, sim),
            backend.source(),
            get_logger("test"),
            observers=[outcomes.append],
            state=_state(tmp_path),
        )
        await _run(reactor, outcomes, 12)
        assert all(o.dead_letter is None for o in outcomes)
        assert _applied(sim) == {name: [1, 2, 3, 4] for name in things}  # the same, whatever the backend


async def test_a_message_a_dead_process_took_is_applied_after_a_restart(
    backend: Backend, tmp_path: Path
) -> None:
    """One process applies A (its step recorded); a process that took B dies before applying it;
    the next process gets B again and applies it. On RabbitMQ, B came back numbered as A had been
    (entry ids counted per process), found A's step completed, and was acked with nothing applied."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(RULE)
    async with Simulator(validate=False) as sim:
        a, b = (sim.state.add_thing(name) for name in ("a", "b"))
        for thing in (a, b):
            sim.state.add_config(thing, f"e-{thing.name}", "k", [], "{}")
        await backend.publish(backend.stream(), _update(a.id, 1))
        outcomes: list[Outcome] = []
        first = Reactor.build(
            _settings(rules, sim),
            backend.source(),
            get_logger("test"),
            [outcomes.append],
            state=_state(tmp_path),
        )
        await _run(first, outcomes, 1)
        await backend.publish(backend.stream(), _update(b.id, 1))
        dying = backend.source()
        await dying.start()
        async with asyncio.timeout(10):
            while not await dying.read(1, 100):
                pass
        await dying.close()  # died holding B, before its action ran
        outcomes.clear()
        second = Reactor.build(
            _settings(rules, sim),
            backend.source(),
            get_logger("test"),
            [outcomes.append],
            state=_state(tmp_path),
        )
        await _run(second, outcomes, 1)
        assert outcomes[0].delivery.deliveries >= 2  # a redelivery: its completed steps were looked up
        assert _applied(sim) == {"a": [1], "b": [1]}


async def test_nats_killed_and_restarted_mid_run_loses_nothing(tmp_path: Path) -> None:
    server = PrivateNats(tmp_path / "nats")
    server.start()
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(RULE)
    try:
        async with Simulator(validate=False) as sim:
            sim.faults.latency_ms = 20
            things = [sim.state.add_thing(f"dev{i}") for i in range(10)]
            for thing in things:
                sim.state.add_config(thing, f"e-{thing.name}", "k", [], "{}")
            nats_settings = NatsSettings(url=server.url, ack_wait_s=2.0)
            seed = NatsJetStreamSource(nats_settings)
            await seed.start()  # creates the stream (file storage: it survives the restart)
            await seed.close()
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            for seq in range(1, 21):
                for thing in things:
                    body = json.dumps({"operation": "config.update", "thing_id": thing.id, "seq": str(seq)})
                    await js.publish("events.supermq.bootstrap", wrap_payload(body.encode()))
            await nc.close()
            settings = load_settings(
                None, rules={"dir": rules, "reload_interval_s": 0}, worker={"concurrency": 4}
            )
            settings = settings.model_copy(update={"supermq": sim.settings()})
            outcomes: list[Outcome] = []
            reactor = Reactor.build(
                settings,
                NatsJetStreamSource(nats_settings),
                get_logger("test"),
                observers=[outcomes.append],
                state=_state(tmp_path),
            )
            stop = asyncio.Event()
            task = asyncio.create_task(reactor.run(stop))
            async with asyncio.timeout(60):
                while len(sim.state.effects) < 40:
                    await asyncio.sleep(0.01)
                await asyncio.to_thread(server.kill)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(server.start)
                while any(_applied(sim).get(t.name, [])[-1:] != [20] for t in things):
                    await asyncio.sleep(0.05)
            stop.set()
            await task
            applied = _applied(sim)
            for thing in things:
                assert sorted(set(applied[thing.name])) == list(range(1, 21)), applied[
                    thing.name
                ]  # none lost
    finally:
        server.stop()
