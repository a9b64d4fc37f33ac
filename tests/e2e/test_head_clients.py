"""SuperMQ HEAD end to end on a real Redis, both sides HEAD's: events as HEAD publishes them
(per-operation streams found through a glob pattern, the one ``data`` field, ``client_id``,
``channels`` as a JSON array, ``state`` as State.String() ("0"), the ``"domain_id "`` key) drive the shipped
onboarding, push and rotation rules against the simulator's ``clients`` profile (HEAD's API,
checked against the supermq-head documents). Afterwards the simulator holds exactly what the
rules asked for, and of the device's certificates the old one, and only it, is revoked by serial.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from reactor.settings import load_settings
from reactor.supermq.simulator import Simulator
from reactor.supermq.simulator.contract import Contract
from tests.conftest import REDIS_URL, REPO
from tests.delivery.helpers import running_reactor, until
from tests.e2e.test_head_events import head_streams

DAY = 86400.0


@pytest.fixture
async def head() -> AsyncIterator[Simulator]:
    async with Simulator(profile="clients", contract=Contract(profile="clients")) as simulator:
        yield simulator


def _data(**values: Any) -> dict[Any, Any]:
    """pkg/events/redis/publisher.go: one field ``data``, the JSON of Encode() + occurred_at."""
    return {"data": json.dumps(values, separators=(",", ":"))}


async def test_head_events_drive_onboarding_push_and_rotation_on_heads_api(
    redis_client: aioredis.Redis, head: Simulator, unique: str, tmp_path: Path
) -> None:
    family = f"e2h{unique}"
    prefix = f"events.{family}.bootstrap"  # HEAD: events.magistrala.bootstrap.<entity>.<op>
    state = head.state
    client = state.add_thing("gateway")
    ctrl, data = state.add_channel("control", metadata={"type": "control"}), state.add_channel("data")
    config = state.add_config(client, "FF-41", "ext-key", [ctrl.id, data.id], '{"mode": "eco"}', "gateway")
    old = state.issue_cert(client.id, 5 * DAY)  # served, due (renew_before 30d)
    spare = state.issue_cert(client.id, 300 * DAY)  # the device's other certificate: not to be touched
    config.client_cert, config.client_key, config.ca_cert = old.pem, old.key_pem, state.ca.pem
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "ca.pem").write_text(state.ca.pem)
    settings = load_settings(
        None,
        redis=head_streams(prefix, family),
        worker={"block_ms": 50},
        events={"families": [family]},
        rules={"dir": REPO / "rules", "reload_interval_s": 0},
        certs={"trust_dir": trust, "renew_before": "30d"},
        state={"backend": "memory"},
    )
    settings = settings.model_copy(update={"supermq": head.settings()})
    domain = state.domain_id
    await redis_client.xadd(  # bootstrap/events/producer/events.go configEvent
        f"{prefix}.config.create",
        _data(
            operation="bootstrap.config.create",
            state="0",  # State.String() is strconv.Itoa: "0"
            client_id=client.id,
            content='{"mode": "eco"}',
            **{"domain_id ": domain},
            name="gateway",
            external_id="FF-41",
            channels=[ctrl.id, data.id],
            occurred_at=1796110400000000001,
        ),
    )
    async with running_reactor(settings) as (reactor, outcomes, _stop):
        await until(lambda: len(outcomes) == 1)
        assert reactor.client.profile.name == "clients"  # set by the settings, HEAD's own API
        await redis_client.xadd(  # a stream new to the reactor: found by the next scan
            f"{prefix}.client.bootstrap",
            _data(  # bootstrapEvent: the config as served, certificate included
                operation="bootstrap.client.bootstrap",
                external_id="FF-41",
                success=True,
                client_id=client.id,
                **{"domain_id ": domain},
                channels=[ctrl.id, data.id],
                client_cert=old.pem,
                ca_cert=state.ca.pem,
                occurred_at=1796110400000000002,
            ),
        )
        await until(lambda: len(outcomes) == 2, timeout_s=10.0)
        streams = list(reactor.source.streams)  # type: ignore[attr-defined]

    assert streams == [f"{prefix}.config.create", f"{prefix}.client.bootstrap"]
    assert [o.dead_letter for o in outcomes] == [None, None]
    assert [sorted(r.rule for r in o.rules) for o in outcomes] == [
        ["onboard-new-config"],
        ["push-config-on-bootstrap", "rotate-on-bootstrap-when-due"],
    ]
    # onboarding: active, connected to both channels for publish and subscribe
    assert config.state == 1
    assert state.typed_connections == {
        (client.id, c, k) for c in (ctrl.id, data.id) for k in ("publish", "subscribe")
    }
    # push: the content recorded, the device told on its control channel
    assert json.loads(config.content) == {
        "mode": "eco",
        "reactor": {"bootstrapped": True, "bootstrapped_at_ns": 1796110400000000002},
    }
    assert [(m["channel"], json.loads(m["payload"])) for m in state.messages] == [
        (ctrl.id, [{"n": "config", "vs": "updated"}])
    ]
    # rotation: a new certificate issued for the client (CN its secret) and served; the old one,
    # and only it, revoked by its serial
    new = [c for c in state.certs.values() if c.serial not in (old.serial, spare.serial)]
    assert len(new) == 1
    assert config.client_cert == new[0].pem
    assert {c.serial: c.revoked for c in state.certs.values()} == {
        old.serial: True,
        spare.serial: False,
        new[0].serial: False,
    }
    revoked = [e.detail["serial"] for e in state.effects if e.kind == "cert.revoke"]
    assert revoked == [old.serial]
    for stream in streams:
        assert (await redis_client.xpending(stream, "reactor"))["pending"] == 0
    assert head.contract is not None
    assert head.contract.violations == []


async def test_head_failed_bootstraps_on_redis_provision_one_client(
    redis_client: aioredis.Redis,
    head: Simulator,
    unique: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Zero-touch on SuperMQ HEAD end to end: twenty failed attempts of one enrolled device, as
    HEAD publishes them (``bootstrap.client.bootstrap``, ``success`` false, no client), on a real
    Redis, drive the shipped zero-touch rule (throttled per device in the Redis state store):
    one client, one config, the device's next fetch answered with its channels and content."""
    from reactor.provision.enrollments import derive_key
    from tests.provision.test_zero_touch import ENROLLMENTS, GROUP_SECRET, TEMPLATE

    monkeypatch.setenv("ZT_DEV_001_KEY", "unused-individual-key")
    monkeypatch.setenv("ZT_FACTORY_A_SECRET", GROUP_SECRET)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "sensor.toml").write_text(TEMPLATE)
    (tmp_path / "enrollments.toml").write_text(ENROLLMENTS)
    rules = tmp_path / "rules"
    rules.mkdir()
    shipped = (REPO / "rules" / "zero-touch.toml").read_text()
    (rules / "zero-touch.toml").write_text(shipped.replace("enabled = false", "enabled = true"))
    family = f"e2z{unique}"
    stream = f"events.{family}.bootstrap.client.bootstrap"
    device = f"fa-{unique}"
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
        rules={"dir": rules, "reload_interval_s": 0},
        state={"backend": "redis"},
        provision={
            "enrollments": [str(tmp_path / "enrollments.toml")],
            "templates_dir": str(tmp_path / "templates"),
        },
    )
    settings = settings.model_copy(update={"supermq": head.settings()})
    for n in range(20):
        await redis_client.xadd(
            stream,
            _data(
                operation="bootstrap.client.bootstrap",
                external_id=device,
                success=False,
                occurred_at=1796110500000000000 + n,
            ),
        )
    async with running_reactor(settings) as (reactor, outcomes, _stop):
        await until(lambda: len(outcomes) == 20, timeout_s=15.0)
        assert reactor.client.profile.name == "clients"

    assert [o.dead_letter for o in outcomes] == [None] * 20
    steps = [s for o in outcomes for r in o.rules for s in r.steps]
    provisioned = [s for s in steps if s.type == "provision" and s.ok and not s.skipped]
    throttled = [s for s in steps if s.type == "throttle" and s.skipped]
    assert (len(provisioned), len(throttled)) == (1, 19), "one provisioning, nineteen throttled"
    state = head.state
    assert [t.name for t in state.things.values()] == [device], "one client"
    assert len(state.configs) == 1, "one config"
    [config] = state.configs.values()
    assert (config.external_id, config.external_key, config.state) == (
        device,
        derive_key(GROUP_SECRET, device),
        1,
    )
    assert sorted(c.name for c in state.channels.values()) == [f"{device}-control", f"{device}-data"]
    assert {(config.thing_id, c, k) for c in config.channels for k in ("publish", "subscribe")} == (
        state.typed_connections
    )
    assert (await redis_client.xpending(stream, "reactor"))["pending"] == 0
    assert head.contract is not None
    assert head.contract.violations == []
