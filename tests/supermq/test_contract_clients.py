"""The clients profile (SuperMQ HEAD): every client call, over real HTTP against the simulator's
clients profile, passes request and response validation against the supermq-head documents."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from reactor.app import build_registry
from reactor.errors import ConfigError, PermanentError, RuleSetError
from reactor.ops.logging import get_logger
from reactor.rules.loader import load_rules
from reactor.settings import SuperMQSettings, load_settings
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator
from reactor.supermq.simulator.contract import Contract
from reactor.supermq.simulator.contract_head import HEAD_DEVIATIONS, HEAD_REQUEST_DEVIATIONS


@pytest.fixture
async def head() -> AsyncIterator[Simulator]:
    simulator = Simulator(profile="clients", contract=Contract(profile="clients"))
    async with simulator:
        yield simulator
    assert simulator.contract is not None
    assert simulator.contract.violations == [], "an exchange broke SuperMQ HEAD's OpenAPI contract"


@pytest.fixture
async def hclient(head: Simulator) -> AsyncIterator[SuperMQClient]:
    supermq = SuperMQClient(head.settings(timeout_s=2.0))
    yield supermq
    await supermq.aclose()


async def test_every_client_call_passes_the_head_contract(head: Simulator, hclient: SuperMQClient) -> None:
    client = hclient
    called: set[str] = set()
    real = {
        name: getattr(client, name)
        for name, _ in inspect.getmembers(SuperMQClient, inspect.iscoroutinefunction)
        if not name.startswith("_") and name != "aclose"
    }

    def record(name: str) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            called.add(name)
            return await real[name](*args, **kwargs)

        return wrapper

    for name in real:
        setattr(client, name, record(name))

    state = head.state
    thing = state.add_thing("dev")
    ch1, ch2 = state.add_channel("ctrl"), state.add_channel("data")
    state.add_config(thing, "ext-1", "ek-1", [ch1.id], '{"mode": "a"}', "dev")

    assert (await client.resolve_profile()).name == "clients"
    config = await client.view_config(thing.id)
    assert (config.thing_id, config.thing_key, config.channel_ids, config.state) == (
        thing.id,
        thing.key,
        [ch1.id],
        0,
    )
    page = await client.list_configs(offset=0, limit=100, state=0, name="de")
    assert (page.total, [c.thing_id for c in page.configs]) == (1, [thing.id])
    await client.update_config(thing.id, name="dev2", content='{"mode": "b"}')
    assert (state.configs[thing.id].name, state.configs[thing.id].content) == ("dev2", '{"mode": "b"}')
    await client.update_connections(thing.id, [ch1.id, ch2.id])
    await client.change_state(thing.id, 1)
    assert state.connections == {(thing.id, ch1.id), (thing.id, ch2.id)}
    assert state.typed_connections == {
        (thing.id, c, k) for c in (ch1.id, ch2.id) for k in ("publish", "subscribe")
    }
    assert await client.connect(thing.id, [ch1.id]) == []  # connected already: HEAD's 400, not an error
    assert await client.connect(thing.id, [ch2.id], connect=False) == [ch2.id]
    assert (thing.id, ch2.id) not in state.connections
    assert await client.connect(thing.id, [ch2.id]) == [ch2.id]
    assert (await client.view_thing(thing.id)).credentials.secret == thing.key
    assert (await client.set_thing_enabled(thing.id, False)).status == "disabled"
    assert (await client.set_thing_enabled(thing.id, False)).status == "disabled"  # already: 422 → done
    assert (await client.view_channel(ch1.id)).name == "ctrl"

    cert = await client.issue_cert(thing.id, "24h")  # CN read from the client: its secret
    assert cert.client_cert.startswith("-----BEGIN CERTIFICATE-----")
    assert cert.client_key.startswith("-----BEGIN PRIVATE KEY-----")
    assert state.certs[cert.cert_serial].thing_id == thing.id
    viewed = await client.view_cert(cert.cert_serial)
    assert (viewed.cert_serial, viewed.client_key, viewed.thing_id) == (cert.cert_serial, "", thing.id)
    second = await client.issue_cert(thing.id, "24h", common_name=thing.key)
    assert [c.cert_serial for c in (await client.list_serials(thing.id)).certs] == [
        cert.cert_serial,
        second.cert_serial,
    ]
    stored = await client.update_certs(
        thing.id, client_cert=cert.client_cert, client_key=cert.client_key, ca_cert=state.ca.pem
    )
    assert stored.client_cert == cert.client_cert
    served = await client.served_config(thing.id)  # the view has no certs: read the device's way
    assert (served.client_cert, served.ca_cert) == (cert.client_cert, state.ca.pem)
    assert (await client.device_config("ext-1", "ek-1")).client_key == cert.client_key
    await client.publish(ch1.id, thing.key, [{"n": "x", "v": 1}])
    assert [(m["channel"], m["publisher"]) for m in state.messages] == [(ch1.id, thing.id)]

    await client.revoke_cert(cert.cert_serial.replace(":", "").upper())  # any spelling of the serial
    assert [c.serial for c in state.certs.values() if c.revoked] == [cert.cert_serial]  # only it
    assert (await client.revoke_certs(thing.id)).revocation_time  # the rest of the thing's
    assert all(c.revoked for c in state.certs.values())
    await client.remove_config(thing.id)
    assert thing.id not in state.configs

    # Provisioning (issue 18): create, find by name, remove, the config added by client id.
    made = await client.create_thing("zt-dev", {"site": "lab"})
    assert (state.things[made.id].name, state.things[made.id].metadata) == ("zt-dev", {"site": "lab"})
    assert made.credentials.secret == state.things[made.id].key  # HEAD answers the generated secret
    assert [t.id for t in await client.find_things("zt-dev")] == [made.id]
    assert await client.find_things("zt-de") == []  # the platform's filter is partial; ours is exact
    chan = await client.create_channel("zt-data", {"type": "data"})
    assert [c.id for c in await client.find_channels("zt-data")] == [chan.id]
    state.channels[chan.id].status = "disabled"
    await client.enable_channel(chan.id)
    assert state.channels[chan.id].status == "enabled"
    assert await client.find_config("zt-ext") is None
    await client.add_config(
        {"thing_id": made.id, "external_id": "zt-ext", "external_key": "zt-key", "channels": [chan.id]}
    )
    assert state.configs[made.id].channels == [chan.id]  # sent as client_id (addReq), not thing_id
    found = await client.find_config("zt-ext")
    assert found is not None
    assert (found.thing_id, found.external_id) == (made.id, "zt-ext")
    await client.remove_config(made.id)
    await client.remove_channel(chan.id)
    await client.remove_thing(made.id)
    assert made.id not in state.things
    assert chan.id not in state.channels
    assert await client.find_things("zt-dev") == []
    assert await client.find_channels("zt-data") == []

    assert called == set(real), f"not exercised: {set(real) - called}"
    assert head.contract is not None
    assert head.contract.deviations_seen == set(HEAD_DEVIATIONS) - {
        ("users", "post", "/users/tokens/refresh", 201)
    }
    assert head.contract.request_deviations_seen == set(HEAD_REQUEST_DEVIATIONS)


async def test_head_refresh_reads_the_bearer_and_answers_201(head: Simulator, hclient: SuperMQClient) -> None:
    await hclient.list_configs()
    head.state.expire_access_tokens()
    await hclient.list_configs()  # 401 → refresh (the bearer only) → again
    assert head.contract is not None
    assert ("users", "post", "/users/tokens/refresh", 201) in head.contract.deviations_seen


async def test_head_simulator_refuses_things_era_bodies(head: Simulator, hclient: SuperMQClient) -> None:
    """A v0.14 login and a v0.14 connect are refused as HEAD's code refuses them (400), and a body
    the document forbids is refused by the contract before any handler sees it."""
    thing = head.state.add_thing("dev")
    head.state.add_config(thing, "ext", "key", [], "{}")
    token = await hclient._tokens.token()
    bearer = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient() as http:
        login = await http.post(
            f"{head.url('users')}/users/tokens/issue",
            json={"identity": "admin@example.com", "secret": "12345678"},
        )
        connect = await http.post(
            f"{head.url('channels')}/{head.state.domain_id}/channels/connect",
            json={"thing_id": thing.id, "channel_id": thing.id},
            headers=bearer,
        )
        no_name = await http.put(
            f"{head.url('bootstrap')}/{head.state.domain_id}/clients/configs/{thing.id}",
            json={"content": "{}"},
            headers=bearer,
        )
    assert (login.status_code, connect.status_code) == (400, 400)
    assert no_name.status_code == 400
    assert "openapi" in no_name.json()["message"]
    assert head.contract is not None
    assert [v.kind for v in head.contract.violations] == ["request"]
    head.contract.violations.clear()  # expected here; the fixture checks the rest


def test_the_clients_profile_needs_a_domain() -> None:
    with pytest.raises(ValidationError, match=r"supermq\.domain_id is required"):
        SuperMQSettings(profile="clients")


async def test_a_wrong_domain_is_refused(head: Simulator) -> None:
    settings = head.settings(domain_id="00000000-0000-4000-8000-000000000000", timeout_s=2.0)
    client = SuperMQClient(settings)
    thing = head.state.add_thing("dev")
    head.state.add_config(thing, "ext", "key", [], "{}")
    try:
        with pytest.raises(PermanentError, match="HTTP 403"):
            await client.view_config(thing.id)
        assert (await client.list_configs()).total == 0  # HEAD lists another domain's: none
    finally:
        await client.aclose()


@pytest.mark.parametrize("profile", ["mainflux", "things", "clients"])
async def test_auto_detects_each_simulated_profile(profile: str) -> None:
    """``supermq.profile = "auto"`` reads bootstrap's /health and picks the era the simulator plays
    (HEAD: v0.19.1), then speaks it: a config view passes that era's contract."""
    async with Simulator(profile=profile) as sim:
        thing = sim.state.add_thing("dev")
        sim.state.add_config(thing, "ext", "key", [], "{}")
        client = SuperMQClient(sim.settings(profile="auto", timeout_s=2.0))
        try:
            assert (await client.resolve_profile()).name == profile
            assert (await client.view_config(thing.id)).thing_id == thing.id
        finally:
            await client.aclose()
        assert sim.contract is not None
        assert sim.contract.violations == []


async def test_auto_on_head_without_a_domain_says_so() -> None:
    async with Simulator(profile="clients") as sim:
        client = SuperMQClient(sim.settings(profile="auto", domain_id="", timeout_s=2.0))
        try:
            with pytest.raises(ConfigError, match=r"supermq\.domain_id is required"):
                await client.resolve_profile()
        finally:
            await client.aclose()


SUBTOPIC_RULE = """
[[rule]]
name = "tell-on-a-subtopic"
on = ["thing.bootstrap"]

[[rule.actions]]
type = "message.publish"
channel_id = "{{ event.channels[0] }}"
thing_key = "{{ event.thing_key }}"
subtopic = "control/config"
payload = [{ n = "config", vs = "updated" }]
"""


@pytest.mark.parametrize("profile", ["things", "clients"])
def test_a_rule_the_profile_cannot_do_is_refused_at_load(profile: str, tmp_path: Path) -> None:
    """The same rule loads where the profile can do it (v0.14 routes subtopics), and is refused at
    load with the reason, file and line where it cannot (HEAD's http adapter has no subtopic path)."""
    (tmp_path / "r.toml").write_text(SUBTOPIC_RULE)
    domain = {"domain_id": "4d3c2b1a-0000-4000-8000-00000000d001"} if profile == "clients" else {}
    settings = load_settings(None, supermq={"profile": profile, **domain})
    client = SuperMQClient(settings.supermq)
    registry = build_registry(settings, get_logger("test"), client)
    if profile == "things":
        assert [r.name for r in load_rules(tmp_path, registry).rules] == ["tell-on-a-subtopic"]
        return
    with pytest.raises(RuleSetError) as info:
        load_rules(tmp_path, registry)
    [error] = [str(e) for e in info.value.errors]
    assert error.startswith(f"{tmp_path}/r.toml:")
    assert "rule 'tell-on-a-subtopic'" in error
    assert 'message.publish: the "clients" profile (SuperMQ HEAD) publishes to a channel only' in error


async def test_a_subtopic_reaching_the_clients_profile_anyway_is_refused_with_the_reason(
    head: Simulator, hclient: SuperMQClient
) -> None:
    """``auto`` can pick the profile after the rules loaded: the call then fails, saying why."""
    thing, channel = head.state.add_thing("dev"), head.state.add_channel("ctrl")
    with pytest.raises(PermanentError, match="publishes to a channel only"):
        await hclient.publish(channel.id, thing.key, [], subtopic="control")
    assert head.state.messages == []


PROVISIONING_RULE = """
[[rule]]
name = "make-a-thing"
on = ["thing.bootstrap"]
[[rule.actions]]
type = "things.create"
name = "{{ event.external_id }}"
"""


def test_a_provisioning_rule_loads_on_every_profile(tmp_path: Path) -> None:
    """Issue 18's calls exist for mainflux, things and clients: a rule using them loads on each."""
    (tmp_path / "r.toml").write_text(PROVISIONING_RULE)
    for profile in ("mainflux", "things", "clients"):
        domain = {"domain_id": "4d3c2b1a-0000-4000-8000-00000000d001"} if profile == "clients" else {}
        settings = load_settings(None, supermq={"profile": profile, **domain})
        registry = build_registry(settings, get_logger("test"), SuperMQClient(settings.supermq))
        assert [r.name for r in load_rules(tmp_path, registry).rules] == ["make-a-thing"], profile


def test_a_rule_that_is_off_is_not_held_to_the_profile(tmp_path: Path) -> None:
    """The shipped zero-touch rule is off by default: it must load on clients as on any profile."""
    (tmp_path / "r.toml").write_text(
        PROVISIONING_RULE.replace('on = ["thing.bootstrap"]', 'on = ["thing.bootstrap"]\nenabled = false')
    )
    settings = load_settings(
        None, supermq={"profile": "clients", "domain_id": "4d3c2b1a-0000-4000-8000-00000000d001"}
    )
    registry = build_registry(settings, get_logger("test"), SuperMQClient(settings.supermq))
    assert [(r.name, r.on) for r in load_rules(tmp_path, registry).rules] == [("make-a-thing", ())]  # off
