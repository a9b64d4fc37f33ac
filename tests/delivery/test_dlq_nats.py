"""``reactor dlq`` on NATS JetStream: records the NATS source dead-lettered are listed, shown,
replayed once the cause is fixed (then removed) and purged, as on Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reactor.app import Reactor
from reactor.commands import open_dead_letters, replay_dead_letters
from reactor.delivery.outcome import Outcome
from reactor.delivery.state import MemoryStateStore
from reactor.errors import SourceError
from reactor.ops.logging import get_logger
from reactor.settings import Settings, load_settings
from reactor.sources.nats_jetstream import NatsDeadLetters
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator
from tests.conftest import reactor_cli
from tests.sources.backends import NatsBackend

RULE = """
[[rule]]
name = "activate"
on = ["config.create"]
[[rule.actions]]
id = "activate"
type = "bootstrap.change_state"
config_id = "{{ event.thing_id }}"
state = 1
"""


@pytest.fixture
async def backend(unique: str) -> AsyncIterator[NatsBackend]:
    chosen = NatsBackend(unique)
    await chosen.setup()
    yield chosen
    await chosen.teardown()


def _settings(tmp_path: Path, backend: NatsBackend, sim: Simulator) -> Settings:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "r.toml").write_text(RULE)
    settings = load_settings(None, source="nats", rules={"dir": rules, "reload_interval_s": 0})
    return settings.model_copy(update={"nats": backend.settings, "supermq": sim.settings()})


def cli(*args: str, backend: NatsBackend) -> subprocess.CompletedProcess[str]:
    s = backend.settings
    env = {
        "REACTOR_SOURCE": "nats",
        "REACTOR_NATS__URL": s.url,
        "REACTOR_NATS__DLQ_STREAM": s.dlq_stream,
        "REACTOR_NATS__DLQ_SUBJECT": s.dlq_subject,
    }
    return reactor_cli("dlq", *args, env=env)


async def _dead_letter_one(settings: Settings, backend: NatsBackend, thing_id: str) -> None:
    """Publish a config.create whose activation fails (no config yet: 404) and run until settled."""
    await backend.publish(backend.stream(), {"operation": "config.create", "thing_id": thing_id})
    outcomes: list[Outcome] = []
    reactor = Reactor.build(
        settings, backend.source(), get_logger("test"), observers=[outcomes.append], state=MemoryStateStore()
    )
    stop = asyncio.Event()
    task = asyncio.create_task(reactor.run(stop))
    async with asyncio.timeout(30):
        while not outcomes:
            await asyncio.sleep(0.02)
    stop.set()
    await task
    assert outcomes[0].dead_letter is not None


async def test_nats_dead_letters_list_show_replay_purge(tmp_path: Path, backend: NatsBackend) -> None:
    async with Simulator(validate=False) as sim:
        settings = _settings(tmp_path, backend, sim)
        first, second = sim.state.add_thing("one"), sim.state.add_thing("two")
        await _dead_letter_one(settings, backend, first.id)
        await _dead_letter_one(settings, backend, second.id)

        listed = cli("list", backend=backend)
        assert listed.returncode == 0, listed.stderr
        rows = listed.stdout.splitlines()[1:]
        assert [r.split()[0] for r in rows] == ["2", "1"]  # newest first, ids are stream sequences
        assert all("action_failed" in r and "activate" in r for r in rows)
        shown = json.loads(cli("show", "1", backend=backend).stdout)
        assert (shown["entry_id"], shown["status"]) == ("1", "404")
        assert first.id in shown["error"]
        assert set(shown["event"]) == {"body_b64"}  # the protobuf-wrapped body, as received
        assert cli("show", "1-0", backend=backend).returncode == 1  # not an id here

        sim.state.add_config(first, "e", "k", [], "{}")  # the cause, fixed for the first only
        dead = await NatsDeadLetters.connect(settings.nats)
        client = SuperMQClient(settings.supermq)
        code = await replay_dead_letters(settings, dead, get_logger("test"), ids=["1"], client=client)
        assert code == 0
        assert sim.state.configs[first.id].state == 1
        assert [r.id for r in await dead.records()] == ["2"]  # replayed and removed
        await dead.close()

        purged = cli("purge", "--all", backend=backend)
        assert "purged 1 record(s) from JetStream stream" in purged.stdout
        assert cli("list", backend=backend).stdout.strip() == "no dead-letter records"


async def test_unreachable_rabbitmq_dead_letters_are_one_line_without_the_password() -> None:
    """RabbitMQ's dead letters are read now (tests/delivery/test_dlq_rabbitmq.py); a broker that is
    not there is one line naming it, its password masked."""
    settings = load_settings(None, source="rabbitmq", rabbitmq={"url": "amqp://guest:sekret@127.0.0.1:1/"})
    with pytest.raises(SourceError, match=r"rabbitmq amqp://\*\*\*@127\.0\.0\.1:1/") as raised:
        await open_dead_letters(settings)
    assert "sekret" not in str(raised.value)


async def test_an_empty_dead_letter_stream_lists_nothing(backend: NatsBackend) -> None:
    """A dead-letter stream that exists with nothing in it (a fresh install, or after a purge):
    no records, not a 400 from asking for sequence 0 (reactor status, dlq list and doctor failed)."""
    dead = await NatsDeadLetters.connect(backend.settings)
    try:
        assert await dead.count() == 0
        assert await dead.records(limit=5) == []
    finally:
        await dead.close()
