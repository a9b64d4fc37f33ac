"""Every client call, over real HTTP against the simulator, passes OpenAPI request and response validation."""

from __future__ import annotations

import inspect
from typing import Any

import httpx
import pytest
from multidict import CIMultiDict

from reactor.errors import PermanentError, RetryableError
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator
from reactor.supermq.simulator.contract import DEVIATIONS, REQUEST_DEVIATIONS, Contract


async def test_every_client_call_passes_the_contract(sim: Simulator, client: SuperMQClient) -> None:
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

    thing = sim.state.add_thing("dev")
    ch1, ch2 = sim.state.add_channel("ctrl"), sim.state.add_channel("data")
    sim.state.add_config(thing, "ext-1", "ek-1", [ch1.id], '{"mode": "a"}', "dev")

    assert (await client.resolve_profile()).name == "things"
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
    await client.update_connections(thing.id, [ch1.id, ch2.id])
    await client.change_state(thing.id, 1)
    assert sim.state.connections == {(thing.id, ch1.id), (thing.id, ch2.id)}
    assert await client.connect(thing.id, [ch1.id]) == []  # already connected: 409 → not an error
    assert await client.connect(thing.id, [ch2.id], connect=False) == [ch2.id]
    assert await client.connect(thing.id, [ch2.id]) == [ch2.id]
    assert (await client.view_thing(thing.id)).credentials.secret == thing.key
    assert (await client.set_thing_enabled(thing.id, False)).status == "disabled"
    assert (await client.view_channel(ch1.id)).name == "ctrl"
    cert = await client.issue_cert(thing.id, "24h")
    assert cert.client_cert.startswith("-----BEGIN CERTIFICATE-----")
    assert cert.client_key.startswith("-----BEGIN PRIVATE KEY-----")
    viewed = await client.view_cert(cert.cert_serial)
    assert (viewed.cert_serial, viewed.client_key) == (cert.cert_serial, "")
    assert [c.cert_serial for c in (await client.list_serials(thing.id)).certs] == [cert.cert_serial]
    stored = await client.update_certs(
        thing.id, client_cert=cert.client_cert, client_key=cert.client_key, ca_cert=sim.state.ca.pem
    )
    assert stored.client_cert == cert.client_cert
    served = await client.served_config(thing.id)  # the view has no certs: read the device's way
    assert (served.client_cert, served.ca_cert) == (cert.client_cert, sim.state.ca.pem)
    assert (await client.device_config("ext-1", "ek-1")).client_key == cert.client_key
    await client.publish(ch1.id, thing.key, [{"n": "x", "v": 1}])
    await client.publish(
        ch1.id, thing.key, {"cmd": "reboot"}, subtopic="control/reboot", content_type="application/json"
    )
    assert [m["subtopic"] for m in sim.state.messages] == ["", "control/reboot"]
    with pytest.raises(PermanentError, match="revokes every certificate of a thing"):
        await client.revoke_cert(cert.cert_serial)  # v0.14 cannot revoke one serial
    assert (await client.revoke_certs(thing.id)).revocation_time
    await client.remove_config(thing.id)
    assert thing.id not in sim.state.configs
    # provisioning (reactor.provision): create, find by name, remove
    made = await client.create_thing("zt-1", {"site": "lab"})
    assert [t.id for t in await client.find_things("zt-1")] == [made.id]
    channel = await client.create_channel("zt-1-data", {"type": "data"})
    sim.state.channels[channel.id].status = "disabled"
    assert [c.id for c in await client.find_channels("zt-1-data")] == []  # v0.14.0 lists enabled ones
    sim.state.channels[channel.id].status = "enabled"
    assert [c.id for c in await client.find_channels("zt-1-data")] == [channel.id]
    await client.add_config({"thing_id": made.id, "external_id": "zt-1", "external_key": "k", "channels": []})
    found = await client.find_config("zt-1")
    assert found is not None
    assert found.thing_id == made.id
    assert await client.find_config("zt-nobody") is None
    sim.state.channels[channel.id].status = "disabled"
    await client.enable_channel(channel.id)
    await client.remove_channel(channel.id)
    await client.remove_thing(made.id)
    assert channel.id not in sim.state.channels
    assert made.id not in sim.state.things

    assert called == set(real), f"not exercised: {set(real) - called}"
    assert sim.contract is not None
    # Every exemption listed is one the code really makes (no stale entries), and vice versa.
    not_here = {("users", "post", "/users/tokens/refresh", 201)} | V014_REFUSALS  # seen below
    assert not_here <= set(DEVIATIONS)
    assert sim.contract.deviations_seen == set(DEVIATIONS) - not_here
    assert sim.contract.request_deviations_seen == set(REQUEST_DEVIATIONS)


#: Deviations only a refusal shows: Magistrala v0.14.0's code answers these statuses, its spec does
#: not list them (DEVIATIONS names the source of each). The test below makes every one.
V014_REFUSALS = {
    ("users", "post", "/users/tokens/refresh", 401),
    ("bootstrap", "post", "/things/configs", 409),
    ("bootstrap", "post", "/things/configs", 503),
    ("bootstrap", "put", "/things/state/{configId}", 503),
    ("bootstrap", "put", "/things/configs/connections/{configId}", 503),
    ("things", "get", "/things/{thingID}", 403),
    ("things", "post", "/things/{thingID}/enable", 403),
    ("things", "post", "/things/{thingID}/disable", 403),
    ("things", "post", "/connect", 403),
    ("things", "post", "/disconnect", 403),
    ("things", "get", "/channels/{chanID}", 403),
    ("http", "post", "/channels/{id}/messages", 502),
}


async def test_v014_refusals_off_the_spec(sim: Simulator, client: SuperMQClient) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"
    thing, ctrl, data = (
        sim.state.add_thing("dev"),
        sim.state.add_channel("ctrl"),
        sim.state.add_channel("data"),
    )
    sim.state.add_config(thing, "ext", "key", [ctrl.id], "{}")
    for call in (
        client.view_thing(unknown),
        client.set_thing_enabled(unknown, True),
        client.set_thing_enabled(unknown, False),
        client.view_channel(unknown),
        client.connect(thing.id, [unknown]),
        client.connect(thing.id, [unknown], connect=False),
    ):
        with pytest.raises(PermanentError, match="HTTP 403"):
            await call
    await client.connect(thing.id, [ctrl.id])
    with pytest.raises(RetryableError, match="HTTP 503"):  # activation meets the pair: 409
        await client.change_state(thing.id, 1)
    await client.connect(thing.id, [ctrl.id], connect=False)
    await client.change_state(thing.id, 1)
    await client.connect(thing.id, [data.id])
    with pytest.raises(RetryableError, match="HTTP 503"):  # adding data to an active config: 409
        await client.update_connections(thing.id, [ctrl.id, data.id])
    token = await client._tokens.token()
    async with httpx.AsyncClient() as http:
        for body, status in (
            ({"external_id": "other", "external_key": "k", "thing_id": unknown}, 503),
            ({"external_id": "ext", "external_key": "k"}, 409),
        ):
            answer = await http.post(
                f"{sim.url('bootstrap')}/things/configs",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert answer.status_code == status
        garbled = await http.post(
            f"{sim.url('users')}/users/tokens/refresh", json={}, headers={"Authorization": "Bearer x.y.z"}
        )
        assert garbled.status_code == 401
        unauthenticated = await http.post(
            f"{sim.url('http')}/channels/{ctrl.id}/messages",
            content=b"[]",
            headers={"Content-Type": "application/senml+json"},
        )
        assert unauthenticated.status_code == 502  # mproxy in front of the adapter
    assert sim.contract is not None
    on_the_way = {
        ("users", "post", "/users/tokens/issue", 201),
        ("things", "post", "/connect", 201),
        ("bootstrap", "put", "/things/state/{configId}", 200),
    }
    assert sim.contract.deviations_seen == V014_REFUSALS | on_the_way


async def test_refresh_and_device_bootstrap_deviations(sim: Simulator, client: SuperMQClient) -> None:
    thing = sim.state.add_thing("dev")
    sim.state.add_config(thing, "ext-9", "key-9", [], "{}")
    await client.list_configs()
    sim.state.expire_access_tokens()
    await client.list_configs()  # 401 → refresh → again
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"{sim.url('bootstrap')}/things/bootstrap/ext-9", headers={"Authorization": "Thing key-9"}
        )
    assert answer.status_code == 200
    assert answer.json()["thing_key"] == thing.key
    assert sim.contract is not None
    assert ("users", "post", "/users/tokens/refresh", 201) in sim.contract.deviations_seen
    assert ("bootstrap", "get", "/things/bootstrap/{externalId}") in sim.contract.request_deviations_seen


async def test_the_simulator_rejects_a_request_the_spec_forbids(
    sim: Simulator, client: SuperMQClient
) -> None:
    thing = sim.state.add_thing("dev")
    sim.state.add_config(thing, "ext", "key", [], "{}")
    token = await client._tokens.token()  # a raw request the client would never send
    async with httpx.AsyncClient() as http:
        answer = await http.put(
            f"{sim.url('bootstrap')}/things/configs/{thing.id}",
            json={"name": "only"},
            headers={"Authorization": f"Bearer {token}"},
        )
        bad_limit = await http.get(
            f"{sim.url('bootstrap')}/things/configs?limit=1000", headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 400
    assert "openapi" in answer.json()["message"]
    assert "content" in answer.json()["message"]
    assert bad_limit.status_code == 400
    assert sim.contract is not None
    assert len(sim.contract.violations) == 2
    assert {v.kind for v in sim.contract.violations} == {"request"}
    sim.contract.violations.clear()  # expected here; the fixture checks the rest


def test_a_response_off_the_spec_is_a_violation() -> None:
    contract = Contract()
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})
    contract.check_response(
        "bootstrap",
        "GET",
        "/things/configs",
        "/things/configs",
        [],
        CIMultiDict(),
        None,
        200,
        headers,
        b'{"total": "many", "configs": "none"}',
    )
    assert [v.kind for v in contract.violations] == ["response"]


async def test_errors_carry_status_and_supermq_message(sim: Simulator, client: SuperMQClient) -> None:
    with pytest.raises(PermanentError) as info:
        await client.view_config("00000000-0000-0000-0000-000000000000")
    assert info.value.status == 404
    assert "HTTP 404: entity not found: config not found" in str(info.value)
