"""The simulator against the real Mainflux: one scripted sequence of the requests the reactor makes,
sent to both; the status codes and the answer shapes (keys and value types) must be the same.

The simulator plays ``profile = "mainflux"`` here. A change to one of its answers (a status, a
key, a null) makes ``test_a_changed_simulator_answer_is_caught`` fail the comparison.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from reactor.certs.ca import LocalCA
from reactor.supermq.simulator import Simulator
from tests.conformance.deployment import ADMIN_EMAIL, ADMIN_SECRET, Deployment
from tests.conformance.platform import Platform

DAY = 86_400.0


@dataclass
class Target:
    """Where the sequence runs: base URLs and the entities seeded there."""

    urls: Callable[[str], str]
    thing_id: str
    thing_key: str
    ctrl: str
    data: str


@dataclass(frozen=True)
class Step:
    name: str
    service: str
    method: str
    path: str
    body: Any = None
    auth: str = "user"  # user | refresh | thing | device | bad-device | none


def sequence(t: Target, cert: str, key: str) -> list[Step]:
    """The reactor's calls (and the device's), in the order a device's life has them."""
    tid, ctrl, data = t.thing_id, t.ctrl, t.data
    policies = {"subjects": [tid], "objects": [ctrl], "actions": ["m_read", "m_write"]}
    return [
        Step("health", "bootstrap", "GET", "/health", auth="none"),
        Step("refresh", "users", "POST", "/users/tokens/refresh", {}, auth="refresh"),
        Step(
            "config.add",
            "bootstrap",
            "POST",
            "/things/configs",
            {
                "thing_id": tid,
                "external_id": f"d-{tid[:8]}",
                "external_key": "dk",
                "channels": [ctrl, data],
                "name": "diff",
                "content": '{"a":1}',
                "client_cert": cert,
                "client_key": key,
            },
        ),
        Step("config.view", "bootstrap", "GET", f"/things/configs/{tid}"),
        Step(
            "config.view.missing", "bootstrap", "GET", "/things/configs/00000000-0000-0000-0000-000000000000"
        ),
        Step("config.list", "bootstrap", "GET", "/things/configs?offset=0&limit=10"),
        Step(
            "config.update",
            "bootstrap",
            "PUT",
            f"/things/configs/{tid}",
            {"name": "diff", "content": '{"a":2}'},
        ),
        Step(
            "config.certs",
            "bootstrap",
            "PATCH",
            f"/things/configs/certs/{tid}",
            {"client_cert": cert, "client_key": key, "ca_cert": ""},
        ),
        Step(
            "config.connections",
            "bootstrap",
            "PUT",
            f"/things/configs/connections/{tid}",
            {"channels": [ctrl]},
        ),
        Step("config.state.bad", "bootstrap", "PUT", f"/things/state/{tid}", {"state": 7}),
        Step("config.state", "bootstrap", "PUT", f"/things/state/{tid}", {"state": 1}),
        Step("device.bootstrap", "bootstrap", "GET", f"/things/bootstrap/d-{tid[:8]}", auth="device"),
        Step(
            "device.bootstrap.wrong", "bootstrap", "GET", f"/things/bootstrap/d-{tid[:8]}", auth="bad-device"
        ),
        Step("connect", "things", "POST", "/connect", policies),
        Step("connect.again", "things", "POST", "/connect", policies),
        Step("connect.pair", "things", "POST", "/connect", {"thing_id": tid, "channel_id": ctrl}),
        Step("publish", "http", "POST", f"/channels/{ctrl}/messages", [{"n": "t", "v": 1}], auth="thing"),
        Step("disconnect", "things", "POST", "/disconnect", {"subjects": [tid], "objects": [data]}),
        Step("thing.view", "things", "GET", f"/things/{tid}"),
        Step("channel.view", "things", "GET", f"/channels/{ctrl}"),
        Step("thing.disable", "things", "POST", f"/things/{tid}/disable"),
        Step("thing.enable", "things", "POST", f"/things/{tid}/enable"),
        Step("thing.enable.again", "things", "POST", f"/things/{tid}/enable"),  # 500: already so
        Step("config.remove", "bootstrap", "DELETE", f"/things/configs/{tid}"),
    ]


def shape(value: Any) -> Any:
    """Keys and value types, recursively (a list by the set of its items' shapes)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):  # every item's shape, in no order (channel order is not stable)
        return sorted({json.dumps(shape(v), sort_keys=True) for v in value})
    return "null" if value is None else type(value).__name__


# The keys whose presence depends on data, not on the code: compared by type where present.
_LOOSE = {"updated_at", "updated_by", "tags", "owner"}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _LOOSE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


async def run(t: Target, cert: str, key: str) -> dict[str, tuple[int, Any]]:
    answers: dict[str, tuple[int, Any]] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        issued = await http.post(
            f"{t.urls('users')}/users/tokens/issue", json={"identity": ADMIN_EMAIL, "secret": ADMIN_SECRET}
        )
        assert issued.status_code == 201, issued.text
        login: dict[str, str] = issued.json()
        for step in sequence(t, cert, key):
            headers = {
                "user": {"Authorization": f"Bearer {login['access_token']}"},
                "refresh": {"Authorization": f"Bearer {login['refresh_token']}"},
                "thing": {"Authorization": f"Thing {t.thing_key}"},
                "device": {"Authorization": "Thing dk"},
                "bad-device": {"Authorization": "Thing wrong"},
                "none": {},
            }[step.auth]
            content = None if step.body is None else json.dumps(step.body).encode()
            if content is not None:
                headers["Content-Type"] = (
                    "application/senml+json" if step.service == "http" else "application/json"
                )
            answer = await http.request(
                step.method, t.urls(step.service) + step.path, content=content, headers=headers
            )
            try:
                body = answer.json() if answer.content else None
            except ValueError:
                body = "<not json>"
            answers[step.name] = (answer.status_code, shape(_strip(body)))
    return answers


def differences(real: dict[str, tuple[int, Any]], sim: dict[str, tuple[int, Any]]) -> list[str]:
    out = []
    for name, (status, body) in real.items():
        s_status, s_body = sim[name]
        if s_status != status:
            out.append(f"{name}: status {s_status} != real {status}")
        elif s_body != body:
            out.append(f"{name}: shape {s_body} != real {body}")
    return out


@pytest.fixture(scope="module")
def ca() -> LocalCA:
    return LocalCA("Differential CA")


@pytest.fixture(scope="module")
def real_answers(deployment: Deployment, ca: LocalCA) -> dict[str, tuple[int, Any]]:
    platform = Platform(deployment)
    try:
        thing = platform.thing("diff")
        ctrl, data = platform.channel("ctrl", {"type": "control"}), platform.channel("data")
    finally:
        platform.close()
    cert, key, _, _ = ca.issue(thing["credentials"]["secret"], thing["id"], 90 * DAY)
    target = Target(deployment.url, thing["id"], thing["credentials"]["secret"], ctrl, data)
    return asyncio.run(run(target, cert, key))


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(profile="mainflux", validate=False) as simulator:
        yield simulator


async def _sim_answers(sim: Simulator, ca: LocalCA) -> dict[str, tuple[int, Any]]:
    thing = sim.state.add_thing("diff")
    ctrl = sim.state.add_channel("ctrl", metadata={"type": "control"})
    data = sim.state.add_channel("data")
    cert, key, _, _ = ca.issue(thing.key, thing.id, 90 * DAY)
    target = Target(sim.url, thing.id, thing.key, ctrl.id, data.id)
    return await run(target, cert, key)


async def test_the_simulator_answers_as_the_real_mainflux(
    sim: Simulator, real_answers: dict[str, tuple[int, Any]], ca: LocalCA
) -> None:
    assert differences(real_answers, await _sim_answers(sim, ca)) == []


async def test_a_changed_simulator_answer_is_caught(
    sim: Simulator, real_answers: dict[str, tuple[int, Any]], ca: LocalCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim.state, "config_channel", lambda c: {"id": c.id, "name": c.name, "metadata": {}})
    sim.faults.fail_next(1, 503, path_prefix="/connect")
    found = differences(real_answers, await _sim_answers(sim, ca))
    assert any(d.startswith("config.view: shape") for d in found), found
    assert any(d.startswith("connect: status 503") for d in found), found
