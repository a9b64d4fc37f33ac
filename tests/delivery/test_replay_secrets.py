"""``dlq replay`` sends the original secrets (sealed in the record), while the record as stored
and shown holds none of them in clear; under another key the record replays masked, and says so."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from reactor.commands import replay_dead_letters
from reactor.ops.logging import get_logger
from reactor.settings import Settings
from reactor.sources.redis_streams import RedisDeadLetters
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator
from tests.delivery.helpers import redis_settings, running_reactor, until

CERTS = """
[[rule]]
name = "push-certs"
on = ["config.create"]
retry = { attempts = 1 }
[[rule.actions]]
type = "bootstrap.update_certs"
config_id = "{{ event.thing_id }}"
client_cert = "cert"
client_key = "{{ event.client_key }}"
"""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(validate=False) as simulator:
        yield simulator


def _pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


async def _dead_lettered(
    redis_client: aioredis.Redis, settings: Settings, thing_id: str, pem: str
) -> RedisDeadLetters:
    await redis_client.xadd(
        settings.redis.streams[0],
        {"operation": "config.create", "thing_id": thing_id, "client_key": pem},
    )
    async with running_reactor(settings) as (_, outcomes, _stop):  # no config yet: 404, dead-lettered
        await until(lambda: len(outcomes) == 1)
    dead = RedisDeadLetters(redis_client, settings.redis.dlq_stream)
    (record,) = await dead.records()
    assert record.fields["status"] == "404"
    stored = json.dumps(record.fields)
    assert pem.splitlines()[1] not in stored
    assert "sealed" in record.fields
    return dead


async def test_replay_sends_the_sealed_original_key(
    redis_client: aioredis.Redis, tmp_path: Path, sim: Simulator, unique: str
) -> None:
    pem = _pem()
    settings = redis_settings(
        tmp_path,
        sim,
        unique,
        CERTS,
        state={"backend": "redis"},
        secrets={"key": Fernet.generate_key().decode()},
    )
    thing = sim.state.add_thing("d")
    dead = await _dead_lettered(redis_client, settings, thing.id, pem)
    sim.state.add_config(thing, "e", "k", [], "{}")  # the cause, fixed
    client = SuperMQClient(settings.supermq)
    assert await replay_dead_letters(settings, dead, get_logger("test"), client=client) == 0
    assert sim.state.configs[thing.id].client_key == pem  # the key itself, not ***
    assert await dead.records() == []


async def test_under_another_key_a_record_replays_masked_and_says_so(
    redis_client: aioredis.Redis,
    tmp_path: Path,
    sim: Simulator,
    unique: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pem = _pem()
    sealed_under = {"key": Fernet.generate_key().decode()}
    settings = redis_settings(tmp_path, sim, unique, CERTS, state={"backend": "redis"}, secrets=sealed_under)
    thing = sim.state.add_thing("d")
    dead = await _dead_lettered(redis_client, settings, thing.id, pem)
    sim.state.add_config(thing, "e", "k", [], "{}")
    another_key = SecretStr(Fernet.generate_key().decode())
    other = settings.model_copy(update={"secrets": settings.secrets.model_copy(update={"key": another_key})})
    client = SuperMQClient(settings.supermq)
    await replay_dead_letters(other, dead, get_logger("test"), client=client)
    assert "replaying its masked event" in capsys.readouterr().out
    assert pem.splitlines()[1] not in sim.state.configs[thing.id].client_key
