"""The simulator's "things" profile answers as Magistrala v0.14.0's code does (read from
absmach/supermq at tag v0.14.0), over real HTTP; and the reactor's handling of three of those
answers (a refused refresh, a deleted channel's 403, a status already assigned). The tests of the
simulator's answers check statuses (``ActionError``), not how the reactor classifies them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from reactor.errors import ActionError, PermanentError
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator
from tests.supermq.test_actions import registry, run

UNKNOWN = "00000000-0000-0000-0000-000000000000"


async def _raw(
    sim: Simulator, client: SuperMQClient, service: str, method: str, path: str, body: Any = None
) -> httpx.Response:
    """A request the client would not send (or whose answer it would not show whole)."""
    headers = {"Authorization": f"Bearer {await client._tokens.token()}"}
    async with httpx.AsyncClient() as http:
        return await http.request(method, f"{sim.url(service)}{path}", json=body, headers=headers)


def _login(sim: Simulator) -> dict[str, str]:
    return {"identity": sim.state.identity, "secret": sim.state.secret}


def _kinds(sim: Simulator, thing_id: str) -> list[tuple[str, Any]]:
    return [(e.kind, e.detail.get("channel")) for e in sim.state.effects_of(thing_id)]


# ---- bootstrap: state and connections (bootstrap/service.go ChangeState, UpdateConnections) ----


async def test_the_same_state_again_changes_nothing(sim: Simulator, client: SuperMQClient) -> None:
    thing, ctrl = sim.state.add_thing("dev"), sim.state.add_channel("ctrl")
    sim.state.add_config(thing, "ext", "key", [ctrl.id], "{}")
    await client.change_state(thing.id, 0)
    assert _kinds(sim, thing.id) == []
    await client.change_state(thing.id, 1)
    sim.state.disconnect(thing.id, ctrl.id)  # by hand
    await client.change_state(thing.id, 1)  # 200, and the pair is not connected again
    assert sim.state.connections == set()
    assert [k for k, _ in _kinds(sim, thing.id)] == ["connect", "config.state", "disconnect"]


async def test_activation_over_a_connected_pair_is_503_and_stays_so(
    sim: Simulator, client: SuperMQClient
) -> None:
    thing, ctrl, data = (
        sim.state.add_thing("dev"),
        sim.state.add_channel("ctrl"),
        sim.state.add_channel("data"),
    )
    sim.state.add_config(thing, "ext", "key", [ctrl.id, data.id], "{}")
    await client.connect(thing.id, [data.id])  # as provision or an operator would
    for _ in range(2):  # ctrl is connected by the first try, so every later try fails on it
        with pytest.raises(ActionError) as info:
            await client.change_state(thing.id, 1)
        assert info.value.status == 503
        assert "failed to receive response from Things service" in str(info.value)
    assert sim.state.configs[thing.id].state == 0
    assert sim.state.connections == {(thing.id, ctrl.id), (thing.id, data.id)}


async def test_deactivation_with_a_deleted_channel_is_503(sim: Simulator, client: SuperMQClient) -> None:
    thing, ctrl = sim.state.add_thing("dev"), sim.state.add_channel("ctrl")
    sim.state.add_config(thing, "ext", "key", [ctrl.id], "{}")
    await client.change_state(thing.id, 1)
    del sim.state.channels[ctrl.id]  # things answers 403 for it now
    with pytest.raises(ActionError) as info:
        await client.change_state(thing.id, 0)
    assert (info.value.status, sim.state.configs[thing.id].state) == (503, 1)


async def test_connections_refuse_an_unknown_channel_with_400(sim: Simulator, client: SuperMQClient) -> None:
    thing, ctrl = sim.state.add_thing("dev"), sim.state.add_channel("ctrl")
    sim.state.add_config(thing, "ext", "key", [ctrl.id], "{}")
    with pytest.raises(PermanentError) as info:
        await client.update_connections(thing.id, [ctrl.id, UNKNOWN])
    assert info.value.status == 400
    assert sim.state.configs[thing.id].channels == [ctrl.id]


async def test_an_empty_channel_list_is_stored_as_nothing(sim: Simulator, client: SuperMQClient) -> None:
    thing, ctrl = sim.state.add_thing("dev"), sim.state.add_channel("ctrl")
    sim.state.add_config(thing, "ext", "key", [ctrl.id], "{}")
    await client.change_state(thing.id, 1)
    await client.update_connections(thing.id, [])
    assert sim.state.connections == set()  # the disconnects ran first
    assert sim.state.configs[thing.id].channels == [ctrl.id]  # the store returned early
    assert (await client.view_config(thing.id)).channel_ids == [ctrl.id]


async def test_connections_of_an_active_config_fail_on_things_refusals(
    sim: Simulator, client: SuperMQClient
) -> None:
    thing, ctrl, data = (
        sim.state.add_thing("dev"),
        sim.state.add_channel("ctrl"),
        sim.state.add_channel("data"),
    )
    sim.state.add_config(thing, "ext", "key", [ctrl.id], "{}")
    await client.change_state(thing.id, 1)
    await client.connect(thing.id, [data.id])
    with pytest.raises(ActionError) as info:  # adding data: connected already (409)
        await client.update_connections(thing.id, [ctrl.id, data.id])
    assert info.value.status == 503
    del sim.state.channels[ctrl.id]
    with pytest.raises(ActionError) as info:  # removing ctrl: deleted (403)
        await client.update_connections(thing.id, [data.id])
    assert info.value.status == 503
    assert sim.state.configs[thing.id].channels == [ctrl.id]


async def test_a_deleted_channel_stays_in_the_config_view(sim: Simulator, client: SuperMQClient) -> None:
    thing, ctrl = sim.state.add_thing("dev"), sim.state.add_channel("ctrl", metadata={"type": "control"})
    sim.state.add_config(thing, "ext", "key", [ctrl.id], "{}")
    del sim.state.channels[ctrl.id]  # bootstrap keeps its copy until its own consumer drops it
    config = await client.view_config(thing.id)
    assert [(c.id, c.name, c.metadata) for c in config.channels] == [(ctrl.id, "ctrl", {"type": "control"})]


async def test_config_add_refusals(sim: Simulator, client: SuperMQClient) -> None:
    thing, ctrl = sim.state.add_thing("dev"), sim.state.add_channel("ctrl")
    sim.state.add_config(thing, "ext", "key", [], "{}")
    cases = [
        ({"external_id": "new", "external_key": ""}, 401),
        ({"external_id": "new", "external_key": "k", "channels": [UNKNOWN]}, 400),
        ({"external_id": "new", "external_key": "k", "thing_id": UNKNOWN}, 503),
        ({"external_id": "new", "external_key": "k", "thing_id": thing.id}, 409),
        ({"external_id": "ext", "external_key": "k"}, 409),
        ({"external_id": "new", "external_key": "k", "channels": [ctrl.id]}, 201),
    ]
    for body, status in cases:
        answer = await _raw(sim, client, "bootstrap", "POST", "/things/configs", body)
        assert answer.status_code == status, body
    created = [t for t in sim.state.things.values() if t.id != thing.id]
    assert [t.status for t in created] == ["disabled", "enabled"]  # the one made for "ext" is disabled


# ---- things: connect, status, views (internal/groups/service.go, things/service.go) -----------


async def test_connect_and_disconnect_refusals(sim: Simulator, client: SuperMQClient) -> None:
    thing, ctrl = sim.state.add_thing("dev"), sim.state.add_channel("ctrl")
    cases = [
        ("/connect", {"thing_id": thing.id, "channel_id": UNKNOWN}, 403),
        ("/connect", {"thing_id": UNKNOWN, "channel_id": ctrl.id}, 400),
        ("/connect", {"thing_id": thing.id}, 500),
        ("/connect", {"thing_id": thing.id, "channel_id": ctrl.id}, 201),
        ("/connect", {"thing_id": thing.id, "channel_id": ctrl.id}, 409),
        ("/disconnect", {"thing_id": UNKNOWN, "channel_id": ctrl.id}, 204),
        ("/disconnect", {"thing_id": thing.id, "channel_id": UNKNOWN}, 403),
        ("/disconnect", {"channel_id": ctrl.id}, 500),
        ("/disconnect", {"thing_id": thing.id, "channel_id": ctrl.id}, 204),
        ("/disconnect", {"thing_id": thing.id, "channel_id": ctrl.id}, 204),  # not connected: no-op
    ]
    for path, body, status in cases:
        answer = await _raw(sim, client, "things", "POST", path, body)
        assert answer.status_code == status, (path, body)
    assert _kinds(sim, thing.id) == [("connect", ctrl.id), ("disconnect", ctrl.id)]


async def test_a_status_already_assigned_is_500(sim: Simulator, client: SuperMQClient) -> None:
    thing = sim.state.add_thing("dev")
    again = await _raw(sim, client, "things", "POST", f"/things/{thing.id}/enable")
    assert (again.status_code, again.json()) == (
        500,
        {"error": "status already assigned", "message": "failed to enable client"},
    )
    disabled = await _raw(sim, client, "things", "POST", f"/things/{thing.id}/disable")
    assert disabled.status_code == 200
    assert disabled.json()["credentials"] == {"identity": "dev"}  # ChangeStatus returns no secret
    again = await _raw(sim, client, "things", "POST", f"/things/{thing.id}/disable")
    assert (again.status_code, again.json()["message"]) == (500, "failed to disable client")
    assert [k for k, _ in _kinds(sim, thing.id)] == ["thing.disable"]


async def test_unknown_things_and_channels_are_403(sim: Simulator, client: SuperMQClient) -> None:
    for call in (
        client.view_thing(UNKNOWN),
        client.view_channel(UNKNOWN),
        client.set_thing_enabled(UNKNOWN, True),
        client.set_thing_enabled(UNKNOWN, False),
    ):
        with pytest.raises(PermanentError) as info:
            await call
        assert info.value.status == 403


# ---- users: tokens (users/service.go IssueToken, auth/service.go refreshKey) -------------------


async def test_login_refusals(sim: Simulator) -> None:
    url = f"{sim.url('users')}/users/tokens/issue"
    cases = [
        ({"identity": "nobody@example.com", "secret": sim.state.secret}, 404),
        ({"identity": sim.state.identity, "secret": "wrong-secret"}, 500),
        ({"identity": sim.state.identity, "secret": ""}, 500),
    ]
    async with httpx.AsyncClient() as http:
        for body, status in cases:
            assert (await http.post(url, json=body)).status_code == status, body
        tokens = (
            await http.post(url, json={"identity": sim.state.identity, "secret": sim.state.secret})
        ).json()
    assert set(tokens) == {"access_token", "refresh_token"}  # no access_type at v0.14.0


async def test_a_wrong_secret_is_500_to_the_client(sim: Simulator) -> None:
    client = SuperMQClient(sim.settings(secret="wrong"))
    try:
        with pytest.raises(ActionError, match="users token: HTTP 500"):
            await client.list_configs()
    finally:
        await client.aclose()


async def test_a_refresh_token_is_reusable_until_it_expires(sim: Simulator) -> None:
    users = sim.url("users")
    async with httpx.AsyncClient(base_url=users) as http:
        login = (
            await http.post(
                "/users/tokens/issue", json={"identity": sim.state.identity, "secret": sim.state.secret}
            )
        ).json()
        again = {"Authorization": f"Bearer {login['refresh_token']}"}
        for _ in range(2):
            assert (await http.post("/users/tokens/refresh", json={}, headers=again)).status_code == 201
        sim.state.expire_refresh_tokens()
        expired = await http.post("/users/tokens/refresh", json={}, headers=again)
        garbled = await http.post("/users/tokens/refresh", json={}, headers={"Authorization": "Bearer x.y.z"})
    assert (expired.status_code, garbled.status_code) == (500, 401)


# ---- certs (certs/service.go; certs/api/transport.go encodeError has no 403 or 404) -----------


async def test_cert_refusals_are_500(sim: Simulator, client: SuperMQClient) -> None:
    thing = sim.state.add_thing("dev")
    with pytest.raises(ActionError) as info:
        await client.issue_cert(UNKNOWN, "1h")
    assert info.value.status == 500
    for call in (client.view_cert("0a:0b"), client.revoke_certs(UNKNOWN)):
        with pytest.raises(ActionError) as info:
            await call
        assert info.value.status == 500
    cert = await client.issue_cert(thing.id, "1h")
    await client.revoke_certs(thing.id)
    with pytest.raises(ActionError) as info:  # RevokeCert removed its row
        await client.view_cert(cert.cert_serial)
    assert info.value.status == 500


async def test_revoking_a_thing_without_certs_is_the_zero_time(sim: Simulator, client: SuperMQClient) -> None:
    thing = sim.state.add_thing("dev")
    answer = await _raw(sim, client, "certs", "DELETE", f"/certs/{thing.id}")
    assert (answer.status_code, answer.json()) == (200, {"revocation_time": "0001-01-01T00:00:00Z"})
    assert (await client.revoke_certs(thing.id)).revocation_time == "0001-01-01T00:00:00Z"


# ---- shapes: omitempty and null (bootstrap/api/responses.go, pkg/clients, pkg/groups) ----------


async def test_views_leave_empty_fields_out(sim: Simulator, client: SuperMQClient) -> None:
    thing, ctrl = sim.state.add_thing("dev"), sim.state.add_channel("ctrl")
    sim.state.add_config(thing, "ext", "key", [], "")
    config = (await _raw(sim, client, "bootstrap", "GET", f"/things/configs/{thing.id}")).json()
    assert set(config) == {"thing_id", "thing_key", "external_id", "external_key", "name", "state"}
    sim.state.configs[thing.id].channels = [ctrl.id]
    config = (await _raw(sim, client, "bootstrap", "GET", f"/things/configs/{thing.id}")).json()
    assert config["channels"] == [{"id": ctrl.id, "name": "ctrl", "metadata": None}]
    viewed = (await _raw(sim, client, "things", "GET", f"/things/{thing.id}")).json()
    assert "tags" not in viewed
    assert "metadata" not in viewed
    assert "metadata" not in (await _raw(sim, client, "things", "GET", f"/channels/{ctrl.id}")).json()
    certs = {"client_cert": "", "client_key": "", "ca_cert": ""}
    patched = await _raw(sim, client, "bootstrap", "PATCH", f"/things/configs/certs/{thing.id}", certs)
    assert patched.json() == {"thing_id": thing.id}


async def test_the_device_answer_has_null_channels(sim: Simulator) -> None:
    thing = sim.state.add_thing("dev")
    sim.state.add_config(thing, "ext", "key", [], "")
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"{sim.url('bootstrap')}/things/bootstrap/ext", headers={"Authorization": "Thing key"}
        )
    assert answer.json() == {"thing_id": thing.id, "thing_key": thing.key, "channels": None}


async def test_health_names_the_tag(sim: Simulator, client: SuperMQClient) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{sim.url('bootstrap')}/health")
    assert answer.json()["version"] == "v0.14.0"
    assert answer.headers["Content-Type"].startswith("application/health+json")
    assert (await client.resolve_profile()).name == "things"


# ---- the reactor's handling of these answers ------------------------------------------------


async def test_an_expired_refresh_token_logs_in_again(sim: Simulator, client: SuperMQClient) -> None:
    """tokens.py ``_refresh_once``: v0.14.0's 500 for an expired refresh token falls back to login."""
    await client.list_configs()
    sim.state.expire_access_tokens()
    sim.state.expire_refresh_tokens()
    await client.list_configs()
    calls = [(e.path, e.status) for e in sim.exchanges][-4:]
    assert calls == [
        ("/things/configs", 401),
        ("/users/tokens/refresh", 500),
        ("/users/tokens/issue", 201),
        ("/things/configs", 200),
    ]


async def test_drop_channel_of_a_deleted_channel(sim: Simulator, client: SuperMQClient) -> None:
    """bootstrap.py ``DropChannel._disconnect``: v0.14.0 answers the disconnect of a deleted channel
    with 403, which means nothing is left to disconnect."""
    thing, kept, gone = (
        sim.state.add_thing("dev"),
        sim.state.add_channel("kept"),
        sim.state.add_channel("gone"),
    )
    sim.state.add_config(thing, "ext", "key", [kept.id, gone.id], "{}")
    sim.state.connect(thing.id, gone.id)
    del sim.state.channels[gone.id]
    result = await run(registry(sim, client), "bootstrap.drop_channel", channel_id=gone.id)
    assert result["updated"] == [thing.id]
    assert sim.state.configs[thing.id].channels == [kept.id]
    assert ("/disconnect", 403) in [(e.path, e.status) for e in sim.exchanges]


async def test_enable_and_disable_of_a_thing_already_so(sim: Simulator, client: SuperMQClient) -> None:
    """client.py ``set_thing_enabled``: v0.14.0's 500 "status already assigned" is done, not retried."""
    thing = sim.state.add_thing("dev")
    reg = registry(sim, client)
    await run(reg, "things.enable", thing_id=thing.id)
    assert sim.state.things[thing.id].status == "enabled"
    await run(reg, "things.disable", thing_id=thing.id)
    await run(reg, "things.disable", thing_id=thing.id)
    assert sim.state.things[thing.id].status == "disabled"
    statuses = [e.status for e in sim.exchanges if e.path.startswith(f"/things/{thing.id}/")]
    assert statuses == [500, 200, 500]


# ---- smaller differences (audit item 11) ------------------------------------------------------


async def test_config_listing_filters_and_limits() -> None:
    async with Simulator(validate=False) as sim:  # limit=0 is below the spec's minimum
        things = [sim.state.add_thing(f"d{i}") for i in range(3)]
        for i, thing in enumerate(things):
            sim.state.add_config(thing, f"ext-{i}", "k", [], "{}")
        client = SuperMQClient(sim.settings(timeout_s=2.0))
        try:
            for query, total in (
                ("external_id=ext-1", 1),
                (f"thing_id={things[2].id}", 1),
                (f"thing_key={things[0].key}", 1),
                ("external_id=ext", 0),  # whole values only
            ):
                page = (await _raw(sim, client, "bootstrap", "GET", f"/things/configs?{query}")).json()
                assert page["total"] == total, query
            empty = await _raw(sim, client, "bootstrap", "GET", "/things/configs?limit=0")
            assert (empty.status_code, empty.json()["configs"]) == (200, [])
        finally:
            await client.aclose()


async def test_serials_are_bare_and_bad_queries_are_500() -> None:
    async with Simulator(validate=False) as sim:
        thing = sim.state.add_thing("dev")
        cert = sim.state.issue_cert(thing.id, 3600)
        client = SuperMQClient(sim.settings(timeout_s=2.0))
        try:
            page = (await client.list_serials(thing.id)).certs
            assert [(c.cert_serial, c.thing_id) for c in page] == [(cert.serial, "")]
            raw = await _raw(sim, client, "certs", "GET", f"/serials/{thing.id}")
            assert raw.json()["certs"][0]["expiration"] == "0001-01-01T00:00:00Z"
            for query, status in (("offset=x", 500), ("limit=-1", 500), ("limit=101", 400)):
                answer = await _raw(sim, client, "certs", "GET", f"/serials/{thing.id}?{query}")
                assert answer.status_code == status, query
        finally:
            await client.aclose()


async def test_bodies_are_read_before_the_config_and_true_is_no_state() -> None:
    async with Simulator(validate=False) as sim:
        thing = sim.state.add_thing("dev")
        sim.state.add_config(thing, "ext", "key", [], "{}")
        client = SuperMQClient(sim.settings(timeout_s=2.0))
        token = await client._tokens.token()
        await client.aclose()
        base, bearer = sim.url("bootstrap"), {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient() as http:
            bad = await http.put(f"{base}/things/state/{UNKNOWN}", content=b"{", headers=bearer)
            plain = await http.put(f"{base}/things/configs/{UNKNOWN}", content=b"{}", headers=bearer)
            true = await http.put(f"{base}/things/state/{thing.id}", json={"state": True}, headers=bearer)
            cert = await http.post(
                f"{sim.url('certs')}/certs",
                content=b'{"thing_id": "x", "ttl": "1h"}',
                headers=bearer | {"Content-Type": "application/json; charset=utf-8"},
            )
    assert (bad.status_code, plain.status_code, true.status_code, cert.status_code) == (415, 415, 400, 415)


# ---- http adapter: mproxy v0.4.2 in front (pkg/http/http.go Handler) ----------------------------


async def test_publish_refusals_are_400_and_no_authorization_is_502(sim: Simulator) -> None:
    thing, other = sim.state.add_thing("dev"), sim.state.add_thing("other")
    ctrl = sim.state.add_channel("ctrl")
    sim.state.connect(thing.id, ctrl.id)
    url = f"{sim.url('http')}/channels/{{}}/messages"
    async with httpx.AsyncClient() as http:

        async def status(channel: str, auth: str | None) -> int:
            headers = {"Content-Type": "application/senml+json"} | ({"Authorization": auth} if auth else {})
            return (await http.post(url.format(channel), content=b"[]", headers=headers)).status_code

        assert await status(ctrl.id, f"Thing {thing.key}") == 202
        assert await status(ctrl.id, thing.key) == 202  # a key without the prefix is used as is
        assert await status(UNKNOWN, f"Thing {thing.key}") == 400  # unknown channel
        assert await status(ctrl.id, "Thing wrong") == 400  # wrong key
        assert await status(ctrl.id, f"Thing {other.key}") == 400  # not connected
        assert await status(ctrl.id, None) == 502
