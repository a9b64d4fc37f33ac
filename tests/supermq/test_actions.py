"""Provisioning actions against the simulator: merge patches, connections, certs, publish, http.request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from reactor.actions.base import ActionContext, ActionRegistry
from reactor.actions.bootstrap import merge_patch
from reactor.app import build_registry
from reactor.errors import PermanentError
from reactor.events.decode import Decoder
from reactor.ops.logging import get_logger
from reactor.settings import load_settings
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator

EVENT = Decoder().decode(
    {"operation": "config.create", "thing_id": "t"}, source="t", stream="supermq.bootstrap", entry_id="1-0"
)


def registry(sim: Simulator, client: SuperMQClient, allow: list[str] | None = None) -> ActionRegistry:
    settings = load_settings(None, supermq=sim.settings(http_allowlist=allow or []).model_dump())
    return build_registry(settings, get_logger("test"), client)


async def run(reg: ActionRegistry, type_name: str, **params: Any) -> Any:
    action = reg.get(type_name)
    assert action is not None
    ctx = ActionContext(event=EVENT, rule="r", action_id="a", results={})
    return await action.run(action.params_model.model_validate(params), ctx)


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": 1, "b": {"c": 2}}, {"b": {"d": 3}}, {"a": 1, "b": {"c": 2, "d": 3}}),
        ({"a": 1, "b": 2}, {"a": None}, {"b": 2}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": {"b": 1}}, {"a": "flat"}, {"a": "flat"}),
        ("not a dict", {"a": 1}, {"a": 1}),
        ({}, {"a": {"b": None}}, {"a": {}}),
    ],
)
def test_merge_patch_is_rfc_7386(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


async def test_update_content_merges_into_the_device_config(sim: Simulator, client: SuperMQClient) -> None:
    thing = sim.state.add_thing("dev")
    sim.state.add_config(thing, "ext", "key", [], json.dumps({"server": {"port": 80}, "debug": True}), "dev")
    reg = registry(sim, client)
    result = await run(
        reg,
        "bootstrap.update_content",
        config_id=thing.id,
        patch={"server": {"port": 8883, "tls": True}, "debug": None},
    )
    stored = json.loads(sim.state.configs[thing.id].content)
    assert stored == result["content"] == {"server": {"port": 8883, "tls": True}}
    assert sim.state.configs[thing.id].name == "dev"
    again = await run(
        reg,
        "bootstrap.update_content",
        config_id=thing.id,
        patch={"server": {"port": 8883, "tls": True}, "debug": None},
    )
    assert again["content"] == stored  # idempotent


async def test_update_content_refuses_non_json_content(sim: Simulator, client: SuperMQClient) -> None:
    thing = sim.state.add_thing("dev")
    sim.state.add_config(thing, "ext", "key", [], "mode=fast", "dev")
    with pytest.raises(PermanentError, match="content is not JSON"):
        await run(registry(sim, client), "bootstrap.update_content", config_id=thing.id, patch={"a": 1})
    assert sim.state.configs[thing.id].content == "mode=fast"


async def test_drop_channel_walks_every_config(sim: Simulator, client: SuperMQClient) -> None:
    gone, kept = sim.state.add_channel("gone"), sim.state.add_channel("kept")
    with_gone = set()
    for i in range(230):  # more than two pages of 100
        thing = sim.state.add_thing(f"d{i}")
        channels = [kept.id, gone.id] if i % 3 == 0 else [kept.id]
        sim.state.add_config(thing, f"e{i}", "k", channels, "{}")
        if i % 3 == 0:
            with_gone.add(thing.id)
    result = await run(registry(sim, client), "bootstrap.drop_channel", channel_id=gone.id)
    assert set(result["updated"]) == with_gone
    assert all(gone.id not in c.channels for c in sim.state.configs.values())
    assert all(c.channels == [kept.id] for c in sim.state.configs.values())


async def test_connect_then_activate_then_publish(sim: Simulator, client: SuperMQClient) -> None:
    thing, ctrl, data = (
        sim.state.add_thing("dev"),
        sim.state.add_channel("ctrl"),
        sim.state.add_channel("data"),
    )
    sim.state.add_config(thing, "ext", "key", [ctrl.id], "{}")
    reg = registry(sim, client)
    # A channel outside the config (v0.14.0 refuses to activate a config whose thing is connected
    # to one of its channels already: see test_v014).
    assert (await run(reg, "things.connect", thing_id=thing.id, channel_ids=[data.id]))["changed"] == [
        data.id
    ]
    assert (await run(reg, "things.connect", thing_id=thing.id, channel_ids=[data.id]))["changed"] == []
    await run(reg, "bootstrap.change_state", config_id=thing.id, state=1)
    assert (await run(reg, "things.connect", thing_id=thing.id, channel_ids=[ctrl.id]))["changed"] == []
    await run(reg, "message.publish", channel_id=ctrl.id, thing_key=thing.key, payload=[{"n": "reboot"}])
    assert sim.state.messages[0]["payload"] == b'[{"n": "reboot"}]'
    with pytest.raises(PermanentError) as info:
        await run(reg, "message.publish", channel_id=ctrl.id, thing_key="wrong", payload={})
    assert info.value.status == 400  # v0.14.0's adapter (mproxy) answers any refusal 400
    await run(reg, "things.disable", thing_id=thing.id)
    assert sim.state.things[thing.id].status == "disabled"
    await run(reg, "things.disconnect", thing_id=thing.id, channel_ids=[ctrl.id, data.id])
    assert sim.state.connections == set()


async def test_issue_and_push_certs(sim: Simulator, client: SuperMQClient) -> None:
    thing = sim.state.add_thing("dev")
    sim.state.add_config(thing, "ext", "key", [], "{}")
    reg = registry(sim, client)
    issued = await run(reg, "certs.issue", thing_id=thing.id, ttl="1h")
    assert issued["client_cert"].startswith("-----BEGIN CERTIFICATE-----")
    await run(
        reg,
        "bootstrap.update_certs",
        config_id=thing.id,
        client_cert=issued["client_cert"],
        client_key=issued["client_key"],
        ca_cert=sim.state.ca.pem,
    )
    assert sim.state.configs[thing.id].client_cert == issued["client_cert"]
    revoked = await run(reg, "certs.revoke", thing_id=thing.id)
    assert revoked["revocation_time"]
    assert all(c.revoked for c in sim.state.certs.values())


async def test_http_request_only_to_allowed_hosts(sim: Simulator, client: SuperMQClient) -> None:
    reg = registry(sim, client, allow=["127.0.0.1"])
    answer = await run(reg, "http.request", method="GET", url=f"{sim.url('things')}/health")
    assert answer["status"] == 200
    assert answer["body"]["status"] == "pass"
    for url in ("http://example.com/hook", "file:///etc/passwd", "http://127.0.0.2/x"):
        # refused when the parameters are validated (file://) or by the allowlist
        with pytest.raises(
            (PermanentError, ValidationError), match=r"not on supermq\.http_allowlist|not an http"
        ):
            await run(reg, "http.request", method="GET", url=url)
