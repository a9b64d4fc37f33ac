"""Rotation against the simulator: issue, validate, push, confirm — in that order — and a failure
at any step leaves the device with a valid certificate and the event retried or dead-lettered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reactor.actions.base import ActionContext
from reactor.actions.certs_lifecycle import RotateCert
from reactor.app import Reactor
from reactor.certs.rotation import Rotator
from reactor.certs.sweep import sweep
from reactor.certs.validate import Policy, validate
from reactor.delivery.outcome import Outcome
from reactor.errors import ActionError
from reactor.events.decode import Decoder
from reactor.ops.logging import get_logger
from reactor.settings import CertsSettings, load_settings
from reactor.sources.memory import MemorySource
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator

DAY = 86400.0
EVENT = Decoder().decode(
    {"operation": "thing.bootstrap", "thing_id": "t"}, source="t", stream="s", entry_id="1-0"
)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator() as simulator:
        yield simulator


def _setup(sim: Simulator, tmp_path: Path) -> tuple[Policy, CertsSettings]:
    trust = tmp_path / "trust"
    trust.mkdir(exist_ok=True)
    (trust / "ca.pem").write_text(sim.state.ca.pem)
    certs = CertsSettings(trust_dir=trust, renew_before="30d")
    return Policy.from_trust_dir(trust, renew_before="30d"), certs


def _device(sim: Simulator, ttl_s: float, valid_from_s: float = 0.0) -> str:
    thing = sim.state.add_thing("dev")
    config = sim.state.add_config(thing, f"ext-{thing.id}", "k", [], "{}")
    cert = sim.state.issue_cert(thing.id, ttl_s, valid_from_s=valid_from_s)
    config.client_cert, config.client_key, config.ca_cert = cert.pem, cert.key_pem, sim.state.ca.pem
    return thing.id


async def _rotate(sim: Simulator, tmp_path: Path, thing_id: str, **params: object) -> dict[str, object]:
    policy, certs = _setup(sim, tmp_path)
    client = SuperMQClient(sim.settings())
    try:
        rotator = RotateCert(client, policy, certs, "2400h", None)
        ctx = ActionContext(event=EVENT, rule="r", action_id="rotate", results={})
        return await rotator.run(rotator.params_model.model_validate({"config_id": thing_id, **params}), ctx)
    finally:
        await client.aclose()


def _serves_valid_cert(sim: Simulator, tmp_path: Path, thing_id: str) -> bool:
    policy, _ = _setup(sim, tmp_path)
    config = sim.state.configs[thing_id]
    return validate(
        config.client_cert, policy, key_pem=config.client_key, identity=sim.state.things[thing_id].key
    ).verdict in ("ok", "renew")


async def test_a_due_certificate_is_rotated_in_order(sim: Simulator, tmp_path: Path) -> None:
    thing_id = _device(sim, ttl_s=5 * DAY)  # due: renew_before is 30d
    old = sim.state.configs[thing_id].client_cert
    result = await _rotate(sim, tmp_path, thing_id)
    assert result["rotated"] is True
    assert result["previous"]["verdict"] == "renew"  # type: ignore[index]
    new = sim.state.configs[thing_id].client_cert
    assert new != old
    kinds = [e.kind for e in sim.state.effects_of(thing_id)]
    assert kinds == ["cert.issue", "config.certs"]
    calls = [(e.method, e.path) for e in sim.exchanges if e.service in ("bootstrap", "certs")]
    external_id = sim.state.configs[thing_id].external_id
    assert calls == [  # a view leaves certificates out: each is read the device's way
        ("GET", f"/things/configs/{thing_id}"),
        ("GET", f"/things/bootstrap/{external_id}"),
        ("POST", "/certs"),
        ("PATCH", f"/things/configs/certs/{thing_id}"),
        ("GET", f"/things/configs/{thing_id}"),
        ("GET", f"/things/bootstrap/{external_id}"),
    ]
    assert _serves_valid_cert(sim, tmp_path, thing_id)
    assert result["old_revoked"] is False  # v0.14's API would revoke the new one too


async def test_a_valid_certificate_is_left_alone_unless_forced(sim: Simulator, tmp_path: Path) -> None:
    thing_id = _device(sim, ttl_s=300 * DAY)
    assert (await _rotate(sim, tmp_path, thing_id))["rotated"] is False
    assert [e.kind for e in sim.state.effects_of(thing_id)] == []
    assert (await _rotate(sim, tmp_path, thing_id, force=True))["rotated"] is True


@pytest.mark.parametrize(
    ("step", "fault"),
    [
        ("view", {"path_prefix": "/things/configs/", "method": "GET"}),
        ("issue", {"path_prefix": "/certs", "method": "POST"}),
        ("push", {"path_prefix": "/things/configs/certs/", "method": "PATCH"}),
        ("confirm", {"path_prefix": "/things/configs/", "method": "GET", "skip": 1}),
    ],
)
async def test_a_failure_at_any_step_keeps_a_valid_certificate(
    sim: Simulator, tmp_path: Path, step: str, fault: dict[str, object]
) -> None:
    thing_id = _device(sim, ttl_s=5 * DAY)
    sim.faults.fail_next(1, 503, **fault)  # type: ignore[arg-type]
    with pytest.raises(ActionError) as info:
        await _rotate(sim, tmp_path, thing_id)
    assert info.value.status == 503
    assert _serves_valid_cert(sim, tmp_path, thing_id)
    # A retry completes the rotation (what the rule's retry policy does):
    result = await _rotate(sim, tmp_path, thing_id)
    assert result["rotated"] is (step != "confirm")  # after a failed confirm the new one is already served
    assert _serves_valid_cert(sim, tmp_path, thing_id)
    assert validate(sim.state.configs[thing_id].client_cert, _setup(sim, tmp_path)[0]).verdict == "ok"


RULE = """
[[rule]]
name = "rotate-when-due"
on = ["thing.bootstrap"]
retry = { attempts = 2, initial_s = 0.01, max_wait_s = 0.02, jitter_s = 0 }
[[rule.actions]]
type = "certs.rotate"
config_id = "{{ event.thing_id }}"
"""


async def test_failing_for_good_dead_letters_with_the_reason_and_no_key(
    sim: Simulator, tmp_path: Path
) -> None:
    thing_id = _device(sim, ttl_s=5 * DAY)
    key = sim.state.configs[thing_id].client_key
    _, certs = _setup(sim, tmp_path)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(RULE)
    settings = load_settings(
        None, source="memory", rules={"dir": rules, "reload_interval_s": 0}, certs=certs.model_dump()
    )
    settings = settings.model_copy(update={"supermq": sim.settings()})
    sim.faults.fail_next(5, 503, path_prefix="/things/configs/certs/", method="PATCH")
    source = MemorySource(
        [
            (
                "supermq.bootstrap",
                {"operation": "thing.bootstrap", "thing_id": thing_id, "client_key": key, "success": "1"},
            )
        ]
    )
    outcomes: list[Outcome] = []
    reactor = Reactor.build(settings, source, get_logger("test"), observers=[outcomes.append])
    await reactor.run(asyncio.Event())
    (record,) = source.dead_letters
    fields = record.to_fields()
    assert (fields["rule"], fields["action"], fields["status"], fields["attempts"]) == (
        "rotate-when-due",
        "actions[0] (certs.rotate)",
        "503",
        "2",
    )
    assert "PRIVATE KEY-----" not in fields["event"] or "-----BEGIN PRIVATE KEY-----***" in fields["event"]
    assert key.splitlines()[1] not in str(fields)
    assert _serves_valid_cert(sim, tmp_path, thing_id)


async def test_sweep_over_hundreds_of_configs(sim: Simulator, tmp_path: Path) -> None:
    states = {"ok": 120, "renew": 80, "invalid": 40, "none": 60}
    for _ in range(states["ok"]):
        _device(sim, ttl_s=300 * DAY)
    for _ in range(states["renew"]):
        _device(sim, ttl_s=10 * DAY)
    for _ in range(states["invalid"]):
        _device(sim, ttl_s=DAY, valid_from_s=-3 * DAY)  # expired two days ago
    for _ in range(states["none"]):
        thing = sim.state.add_thing("bare")
        sim.state.add_config(thing, f"ext-{thing.id}", "k", [], "{}")
    policy, certs = _setup(sim, tmp_path)
    client = SuperMQClient(sim.settings())
    seen: list[tuple[int, int]] = []
    try:
        walked: list[str] = []
        rotated: list[str] = []
        rotator = Rotator(client, policy, certs, "2400h", on_verdict=lambda v: rotated.append(v.verdict))
        dry = await sweep(
            client,
            policy,
            certs,
            rotator,
            dry_run=True,
            progress=lambda d, t: seen.append((d, t)),
            on_verdict=lambda v: walked.append(v.verdict),
        )
        assert (dry.total, dry.ok, dry.renew, dry.invalid, dry.without_cert, dry.rotated) == (
            300,
            120,
            80,
            40,
            60,
            0,
        )
        assert seen[-1] == (300, 300)
        assert [e.kind for e in sim.state.effects if e.kind.startswith("cert")] == []
        # Every verdict of the walk is reported through the callback, and nothing was rotated.
        assert (walked.count("ok"), walked.count("renew"), walked.count("invalid"), rotated) == (
            120,
            80,
            40,
            [],
        )
        done = await sweep(client, policy, certs, rotator, dry_run=False)
        assert (done.rotated, done.failed) == (120, 0)
        # The one rotation the action and the sweep share reports the old and the new verdicts.
        assert (rotated.count("ok"), len(rotated)) == (120, 240)
        again = await sweep(client, policy, certs, rotator, dry_run=True)
        assert (again.ok, again.renew, again.invalid, again.without_cert) == (240, 0, 0, 60)
    finally:
        await client.aclose()


async def test_local_ca_rotation_revokes_the_old_one_last(sim: Simulator, tmp_path: Path) -> None:
    """With a development CA (certs.issuer = "local"): issued, pushed, confirmed, then the old revoked."""
    import time

    from reactor.certs.ca import LocalCA

    ca_dir = tmp_path / "dev-ca"
    ca = LocalCA("dev CA")
    ca.save(ca_dir)
    thing = sim.state.add_thing("dev")
    config = sim.state.add_config(thing, "ext", "k", [], "{}")
    old_pem, old_key, _, _ = ca.issue(thing.key, thing.id, 5 * DAY)
    config.client_cert, config.client_key, config.ca_cert = old_pem, old_key, ca.pem
    certs = CertsSettings(trust_dir=ca_dir, issuer="local", local_ca_dir=ca_dir, renew_before="30d")
    policy = Policy.from_trust_dir(ca_dir, renew_before="30d")
    assert validate(old_pem, policy, identity=thing.key).verdict == "renew"

    client = SuperMQClient(sim.settings())
    try:
        rotator = RotateCert(client, policy, certs, "2400h", None)
        ctx = ActionContext(event=EVENT, rule="r", action_id="rotate", results={})
        result = await rotator.run(rotator.params_model.model_validate({"config_id": thing.id}), ctx)
    finally:
        await client.aclose()
    revoked_at = (ca_dir / "crl.pem").stat().st_mtime
    assert result["rotated"] is True
    assert result["old_revoked"] is True
    assert result["old_serial"] == validate(old_pem, Policy(anchors=policy.anchors)).serial
    calls = [(e.method, e.path, e.at) for e in sim.exchanges if e.service == "bootstrap"]
    external_id = sim.state.configs[thing.id].external_id
    assert [(m, p) for m, p, _ in calls] == [
        ("GET", f"/things/configs/{thing.id}"),
        ("GET", f"/things/bootstrap/{external_id}"),
        ("PATCH", f"/things/configs/certs/{thing.id}"),
        ("GET", f"/things/configs/{thing.id}"),
        ("GET", f"/things/bootstrap/{external_id}"),
    ]
    confirmed_at = time.time() - (time.monotonic() - calls[-1][2])
    assert revoked_at >= confirmed_at - 0.05  # the CRL was written after the config served the new one
    new_pem = sim.state.configs[thing.id].client_cert
    assert validate(new_pem, policy, identity=thing.key).verdict == "ok"
    old = validate(old_pem, policy, identity=thing.key)
    assert old.verdict == "invalid"
    assert any(r.startswith("revoked on") for r in old.reasons)


async def test_local_ca_rotation_failing_before_confirm_revokes_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    from reactor.certs.ca import LocalCA

    ca_dir = tmp_path / "dev-ca"
    ca = LocalCA("dev CA")
    ca.save(ca_dir)
    thing = sim.state.add_thing("dev")
    config = sim.state.add_config(thing, "ext", "k", [], "{}")
    old_pem, old_key, _, _ = ca.issue(thing.key, thing.id, 5 * DAY)
    config.client_cert, config.client_key, config.ca_cert = old_pem, old_key, ca.pem
    certs = CertsSettings(trust_dir=ca_dir, issuer="local", local_ca_dir=ca_dir)
    policy = Policy.from_trust_dir(ca_dir)
    sim.faults.fail_next(1, 503, path_prefix="/things/configs/", method="GET", skip=1)  # the confirm fails
    client = SuperMQClient(sim.settings())
    try:
        rotator = RotateCert(client, policy, certs, "2400h", None)
        ctx = ActionContext(event=EVENT, rule="r", action_id="rotate", results={})
        with pytest.raises(ActionError):
            await rotator.run(rotator.params_model.model_validate({"config_id": thing.id}), ctx)
    finally:
        await client.aclose()
    assert not (ca_dir / "crl.pem").exists()  # nothing revoked before the new one was confirmed
    assert validate(old_pem, policy, identity=thing.key).verdict == "renew"
