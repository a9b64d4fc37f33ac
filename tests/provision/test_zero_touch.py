"""Zero-touch provisioning against the simulator, both eras: a refused device fetch, the device
provisioned by the ``provision`` action, the same fetch answered with the template's channels and
content; group-derived keys; an unenrolled device; a burst; a failure at the last step undone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reactor.actions.base import ActionContext, ActionRegistry
from reactor.app import build_registry
from reactor.errors import ConfigError, PermanentError
from reactor.events.decode import Decoder
from reactor.ops.logging import get_logger
from reactor.provision.enrollments import derive_key, load_enrollments
from reactor.provision.templates import load_template
from reactor.settings import load_settings
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator
from reactor.supermq.simulator.contract import Contract

TEMPLATE = """\
[thing]
name = "{{ external_id }}"
metadata = { site = "{{ fields.site }}", external_id = "{{ external_id }}" }

[[channel]]
name = "{{ external_id }}-data"
metadata = { type = "data" }

[[channel]]
name = "{{ external_id }}-control"
metadata = { type = "control" }

[config]
name = "{{ external_id }}"
content = { broker = "mqtt://broker:1883", site = "{{ fields.site }}" }
"""

ENROLLMENTS = """\
[[enrollment]]
external_id = "dev-001"
external_key_env = "ZT_DEV_001_KEY"
template = "sensor"
fields = { site = "lab" }

[[group]]
name = "factory-a"
pattern = "fa-*"
secret_env = "ZT_FACTORY_A_SECRET"
template = "sensor"
fields = { site = "factory-a" }
"""

KEY = "dev-001-external-key-123"
GROUP_SECRET = "factory-a-group-secret"
EVENT = Decoder().decode(
    {"operation": "thing.bootstrap", "external_id": "dev-001", "success": "0"},
    source="t",
    stream="mainflux.bootstrap",
    entry_id="1-0",
)


@pytest.fixture(params=["things", "mainflux", "clients"])
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    """v0.14.0 and SuperMQ HEAD with every exchange checked against their OpenAPI documents;
    Mainflux (no specs)."""
    specs = request.param != "mainflux"
    contract = Contract(profile=request.param) if specs else None
    simulator = Simulator(profile=request.param, contract=contract, validate=specs)
    async with simulator:
        yield simulator
    if simulator.contract is not None:
        assert simulator.contract.violations == []


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZT_DEV_001_KEY", KEY)
    monkeypatch.setenv("ZT_FACTORY_A_SECRET", GROUP_SECRET)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "sensor.toml").write_text(TEMPLATE)
    (tmp_path / "enrollments.toml").write_text(ENROLLMENTS)
    (tmp_path / "rules").mkdir()
    return tmp_path


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[SuperMQClient]:
    supermq = SuperMQClient(sim.settings(timeout_s=2.0))
    yield supermq
    await supermq.aclose()


def registry(sim: Simulator, client: SuperMQClient, layout: Path, **sections: Any) -> ActionRegistry:
    settings = load_settings(
        None,
        supermq=sim.settings().model_dump(),
        rules={"dir": str(layout / "rules")},
        provision={
            "enrollments": [str(layout / "enrollments.toml")],
            "templates_dir": str(layout / "templates"),
        },
        retry={"attempts": 1},
        **sections,
    )
    return build_registry(settings, get_logger("test"), client)


async def provision(reg: ActionRegistry, external_id: str) -> Any:
    action = reg.get("provision")
    assert action is not None
    ctx = ActionContext(event=EVENT, rule="zero-touch", action_id="provision", results={})
    return await action.run(action.params_model.model_validate({"external_id": external_id}), ctx)


def state_path(sim: Simulator) -> str:
    """Where a config's state is changed (activation): under the domain at HEAD."""
    return f"/{sim.state.domain_id}/clients/state/" if sim.state.profile == "clients" else "/things/state/"


def things_named(sim: Simulator, name: str) -> list[Any]:
    return [t for t in sim.state.things.values() if t.name == name and t.status == "enabled"]


def live_channels(sim: Simulator) -> list[Any]:
    return [c for c in sim.state.channels.values() if c.status == "enabled"]


async def test_an_enrolled_device_is_refused_then_provisioned_then_served(
    sim: Simulator, client: SuperMQClient, layout: Path
) -> None:
    with pytest.raises(PermanentError) as refused:
        await client.device_config("dev-001", KEY)
    assert refused.value.status == 404

    result = await provision(registry(sim, client, layout), "dev-001")

    served = await client.device_config("dev-001", KEY)
    assert served.thing_id == result["thing_id"]
    names = sorted(c.name for c in served.channels)
    assert names == ["dev-001-control", "dev-001-data"]
    assert json.loads(served.content) == {"broker": "mqtt://broker:1883", "site": "lab"}
    thing = sim.state.things[served.thing_id]
    assert thing.name == "dev-001"
    assert thing.metadata == {"site": "lab", "external_id": "dev-001"}
    assert {(served.thing_id, c.id) for c in served.channels} <= sim.state.connections
    assert sim.state.configs[served.thing_id].state == 1
    assert KEY not in json.dumps(result), "the external key must not be in the result (state store, audit)"
    assert sorted(result["created"])[0].startswith("channel ")


async def test_a_group_device_is_provisioned_with_its_derived_key(
    sim: Simulator, client: SuperMQClient, layout: Path
) -> None:
    key = derive_key(GROUP_SECRET, "fa-42")
    assert len(key) == 64
    assert key != derive_key(GROUP_SECRET, "fa-43")

    await provision(registry(sim, client, layout), "fa-42")

    served = await client.device_config("fa-42", key)
    assert json.loads(served.content)["site"] == "factory-a"
    assert sim.state.configs[served.thing_id].external_key == key


async def test_an_unenrolled_device_creates_nothing_and_says_why(
    sim: Simulator, client: SuperMQClient, layout: Path
) -> None:
    with pytest.raises(PermanentError, match=r"'stranger-9' is not enrolled"):
        await provision(registry(sim, client, layout), "stranger-9")
    assert sim.state.things == {}
    assert sim.state.channels == {}
    assert sim.state.configs == {}
    assert not [e for e in sim.exchanges if e.method != "GET" and e.path != "/users/tokens/issue"]


async def test_fifty_attempts_in_a_burst_make_one_thing_and_one_config(
    sim: Simulator, client: SuperMQClient, layout: Path
) -> None:
    reg = registry(sim, client, layout)
    results = await asyncio.gather(*(provision(reg, "dev-001") for _ in range(50)))

    assert len(things_named(sim, "dev-001")) == 1
    assert len(sim.state.configs) == 1
    assert len(live_channels(sim)) == 2
    assert sum(1 for r in results if r["created"]) == 1, "one attempt created, 49 found it done"
    assert {r["thing_id"] for r in results} == set(sim.state.configs)


async def test_a_second_attempt_later_creates_nothing(
    sim: Simulator, client: SuperMQClient, layout: Path
) -> None:
    reg = registry(sim, client, layout)
    first = await provision(reg, "dev-001")
    posts = len([e for e in sim.exchanges if e.method == "POST" and e.service != "users"])
    again = await provision(reg, "dev-001")
    assert again["thing_id"] == first["thing_id"]
    assert again["created"] == []
    assert len([e for e in sim.exchanges if e.method == "POST" and e.service != "users"]) == posts


async def test_a_failure_at_activation_removes_what_was_created(
    sim: Simulator, client: SuperMQClient, layout: Path
) -> None:
    sim.faults.fail_next(1, 400, path_prefix=state_path(sim), method="PUT")
    with pytest.raises(PermanentError) as failed:
        await provision(registry(sim, client, layout), "dev-001")
    message = str(failed.value)
    assert "failed at step 'activate'" in message
    assert "thing " in message
    assert "removed" in message
    assert "NOT removed" not in message
    assert things_named(sim, "dev-001") == []
    assert live_channels(sim) == []
    assert sim.state.configs == {}
    with pytest.raises(PermanentError):
        await client.device_config("dev-001", KEY)

    # the next attempt, with the platform well again, provisions it from scratch
    await provision(registry(sim, client, layout), "dev-001")
    assert len(things_named(sim, "dev-001")) == 1


async def test_a_channel_that_exists_is_reused_by_name(
    sim: Simulator, client: SuperMQClient, layout: Path
) -> None:
    existing = sim.state.add_channel("dev-001-control", metadata={"type": "control"})
    result = await provision(registry(sim, client, layout), "dev-001")
    assert existing.id in result["channel_ids"]
    assert len(live_channels(sim)) == 2

    # a failure later must not remove the channel it did not create
    sim.faults.fail_next(1, 400, path_prefix=state_path(sim), method="PUT")
    with pytest.raises(PermanentError):
        await provision(registry(sim, client, layout), "fa-1")
    assert existing.id in sim.state.channels
    assert sim.state.channels[existing.id].status == "enabled"


async def test_the_ensure_actions_reuse_what_exists(
    sim: Simulator, client: SuperMQClient, layout: Path
) -> None:
    reg = registry(sim, client, layout)

    async def run(type_name: str, **params: Any) -> Any:
        action = reg.get(type_name)
        assert action is not None
        ctx = ActionContext(event=EVENT, rule="r", action_id="a", results={})
        return await action.run(action.params_model.model_validate(params), ctx)

    thing = await run("things.create", name="t1", metadata={"a": 1})
    assert thing["created"] is True
    assert (await run("things.create", name="t1"))["thing_id"] == thing["thing_id"]
    channel = await run("channels.create", name="c1")
    assert (await run("channels.create", name="c1")) == channel | {"created": False}
    params = {"thing_id": thing["thing_id"], "external_id": "e1", "external_key": "k-secret-1"}
    made = await run("bootstrap.create_config", **params, channels=[channel["channel_id"]], content={"x": 1})
    assert made["created"] is True
    assert "k-secret-1" not in json.dumps(made)
    assert (await run("bootstrap.create_config", **params))["created"] is False
    assert len(sim.state.configs) == 1
    assert json.loads(sim.state.configs[thing["thing_id"]].content) == {"x": 1}


# ---- loading: file:line, secrets --------------------------------------------------------------


def test_a_bad_template_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[thing]\nname = "x"\n\n[[channel]]\nname = "{{ external_id "\n')
    with pytest.raises(ConfigError, match=rf"{path}:4: channel name: invalid template"):
        load_template(path)
    path.write_text('[thing]\nname = "x"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match=rf"{path}:1: unknown keys in \[thing\]"):
        load_template(path)


def test_enrollment_errors_name_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "e.toml"
    path.write_text('[[enrollment]]\nexternal_id = "a"\nexternal_key_env = "ZT_UNSET_VAR"\ntemplate = "t"\n')
    monkeypatch.delenv("ZT_UNSET_VAR", raising=False)
    unset = rf"{path}:1: external_key_env names 'ZT_UNSET_VAR', which is not set"
    with pytest.raises(ConfigError, match=unset):
        load_enrollments([path])
    path.write_text('[[group]]\nname = "g"\npattern = "*"\nsecret = "in-clear"\ntemplate = "t"\n')
    with pytest.raises(ConfigError, match="secret in clear is not allowed"):
        load_enrollments([path])


def test_a_clear_key_is_refused_inside_the_rules_directory(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    inside = tmp_path / "rules" / "enrollments.csv"
    inside.write_text("external_id,external_key,template,field.site\nd1,clear-key-1,t,lab\n")
    with pytest.raises(ConfigError, match=rf"{inside}:2: external_key in clear is not allowed"):
        load_enrollments([inside], tmp_path / "rules")
    outside = tmp_path / "enrollments.csv"
    outside.write_text(inside.read_text())
    loaded = load_enrollments([outside], tmp_path / "rules")
    found = loaded.find("d1")
    assert found is not None
    assert found.fields == {"site": "lab"}
    assert "clear-key-1" not in json.dumps(found.describe())
    assert "clear-key-1" not in repr(found)


def test_derived_keys_are_stated_hmac_sha256() -> None:
    import base64
    import hashlib
    import hmac

    expected = hmac.new(b"s3cret", b"fa-1", hashlib.sha256).hexdigest()
    assert derive_key("s3cret", "fa-1") == expected
    dps_secret = base64.b64encode(b"raw group key").decode()
    mac = hmac.new(b"raw group key", b"fa-1", hashlib.sha256).digest()
    assert derive_key(dps_secret, "fa-1", "dps") == base64.b64encode(mac).decode()


# ---- the inventory lookup ---------------------------------------------------------------------


async def test_a_device_from_the_inventory_is_provisioned(
    sim: Simulator, client: SuperMQClient, layout: Path
) -> None:
    from aiohttp import web

    asked: list[tuple[str, str]] = []

    async def device(request: web.Request) -> web.Response:
        asked.append((request.match_info["id"], request.headers.get("Authorization", "")))
        if request.match_info["id"] != "inv-7":
            return web.json_response({"error": "unknown"}, status=404)
        return web.json_response(
            {"external_key": "inv-key-7", "template": "sensor", "fields": {"site": "dc"}}
        )

    app = web.Application()
    app.router.add_get("/devices/{id}", device)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        url = f"http://127.0.0.1:{port}/devices/{{external_id}}"
        settings = load_settings(
            None,
            supermq=sim.settings(http_allowlist=["127.0.0.1"]).model_dump(),
            rules={"dir": str(layout / "rules")},
            provision={
                "enrollments": [str(layout / "enrollments.toml")],
                "templates_dir": str(layout / "templates"),
                "inventory_url": url,
                "inventory_token": "inv-token-1",
            },
        )
        reg = build_registry(settings, get_logger("test"), client)
        result = await provision(reg, "inv-7")
        assert "inv-key-7" not in json.dumps(result)
        served = await client.device_config("inv-7", "inv-key-7")
        assert json.loads(served.content)["site"] == "dc"
        with pytest.raises(PermanentError, match=r"'nobody' is not enrolled.*nor the inventory"):
            await provision(reg, "nobody")
        assert ("dev-001", "") not in asked
        await provision(reg, "dev-001")  # in the files: the inventory is not asked
        assert [a[0] for a in asked] == ["inv-7", "nobody"]
        assert asked[0][1] == "Bearer inv-token-1"
    finally:
        await runner.cleanup()


def test_an_inventory_host_off_the_allowlist_is_refused(layout: Path) -> None:
    settings = load_settings(
        None,
        provision={
            "enrollments": [str(layout / "enrollments.toml")],
            "templates_dir": str(layout / "templates"),
            "inventory_url": "https://inventory.example.com/devices/{external_id}",
        },
    )
    with pytest.raises(ConfigError, match=r"provision.inventory_url: host .inventory.example.com. is not on"):
        build_registry(settings, get_logger("test"), SuperMQClient(settings.supermq))


async def test_a_template_with_a_certificate_gets_one_from_the_certs_service(
    sim: Simulator, client: SuperMQClient, layout: Path
) -> None:
    template = layout / "templates" / "sensor.toml"
    template.write_text(template.read_text() + '\n[cert]\nttl = "24h"\n')
    reg = registry(sim, client, layout)
    result = await provision(reg, "dev-001")
    served = await client.device_config("dev-001", KEY)
    assert served.client_cert.startswith("-----BEGIN CERTIFICATE-----")
    assert served.client_key.startswith("-----BEGIN PRIVATE KEY-----")
    assert [c.thing_id for c in sim.state.certs.values()] == [result["thing_id"]]
    assert "PRIVATE KEY" not in json.dumps(result)
    await provision(reg, "dev-001")  # the config serves one: no second certificate
    assert len(sim.state.certs) == 1


async def test_a_template_certificate_from_the_local_ca(
    sim: Simulator, client: SuperMQClient, layout: Path
) -> None:
    from cryptography import x509

    from reactor.certs.ca import LocalCA

    ca = LocalCA()
    ca.save(layout / "ca")
    template = layout / "templates" / "sensor.toml"
    template.write_text(template.read_text() + '\n[cert]\nttl = "24h"\n')
    reg = registry(sim, client, layout, certs={"issuer": "local", "local_ca_dir": str(layout / "ca")})
    result = await provision(reg, "dev-001")
    served = await client.device_config("dev-001", KEY)
    cert = x509.load_pem_x509_certificate(served.client_cert.encode())
    assert cert.issuer == ca.cert.subject
    thing = sim.state.things[result["thing_id"]]
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == thing.key
    assert served.ca_cert == ca.pem
    assert sim.state.certs == {}, "the certs service was not asked"


async def test_a_thing_of_that_name_bootstrapping_another_device_is_not_taken(
    sim: Simulator, client: SuperMQClient, layout: Path
) -> None:
    other = sim.state.add_thing("dev-001")  # what the template names the thing, but another device's
    sim.state.add_config(other, "someone-else", "their-key", [], "", "dev-001")
    with pytest.raises(
        PermanentError, match=r"failed at step 'thing'.*bootstraps external id 'someone-else'"
    ):
        await provision(registry(sim, client, layout), "dev-001")
    assert [c.external_id for c in sim.state.configs.values()] == ["someone-else"]
    assert live_channels(sim) == [], "nothing created is left behind"
