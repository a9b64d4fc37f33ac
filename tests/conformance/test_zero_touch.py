"""Zero-touch provisioning on the real Mainflux: a device the platform does not know tries to
bootstrap, is refused, and the reactor (rules/zero-touch.toml, enabled) provisions it from its
enrollment; the device's next attempt gets its configuration. Judged by the real API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from reactor.provision.enrollments import derive_key
from tests.conformance.conftest import Running, RunReactor, eventually
from tests.conformance.deployment import Deployment
from tests.conformance.platform import Platform
from tests.conftest import REPO

TEMPLATE = """\
[thing]
name = "{{ external_id }}"
metadata = { site = "{{ fields.site }}" }

[[channel]]
name = "{{ external_id }}-data"

[[channel]]
name = "{{ external_id }}-control"
metadata = { type = "control" }

[config]
name = "{{ external_id }}"
content = { broker = "mqtt://broker:1883", site = "{{ fields.site }}" }
"""


def layout(tmp_path: Path, tag: str, monkeypatch: Any) -> dict[str, Any]:
    """The rules (the shipped zero-touch rule, enabled), a template and the enrollments."""
    rules, templates = tmp_path / "rules", tmp_path / "templates"
    rules.mkdir()
    templates.mkdir()
    shipped = (REPO / "rules" / "zero-touch.toml").read_text()
    (rules / "zero-touch.toml").write_text(shipped.replace("enabled = false", "enabled = true"))
    (templates / "sensor.toml").write_text(TEMPLATE)
    monkeypatch.setenv(f"ZT_KEY_{tag}", f"key-{tag}")
    monkeypatch.setenv(f"ZT_GROUP_{tag}", f"group-secret-{tag}")
    enrollments = tmp_path / "enrollments.toml"
    enrollments.write_text(
        f'[[enrollment]]\nexternal_id = "zt-{tag}"\nexternal_key_env = "ZT_KEY_{tag}"\n'
        f'template = "sensor"\nfields = {{ site = "lab" }}\n\n'
        f'[[group]]\nname = "factory"\npattern = "fa-{tag}-*"\nsecret_env = "ZT_GROUP_{tag}"\n'
        f'template = "sensor"\nfields = {{ site = "factory" }}\n'
    )
    return {
        "rules": {"dir": rules, "reload_interval_s": 0},
        "provision": {"enrollments": [enrollments], "templates_dir": templates},
    }


def fetch(deployment: Deployment, external_id: str, key: str) -> httpx.Response:
    """The device's own call."""
    return httpx.get(
        f"{deployment.url('bootstrap')}/things/bootstrap/{external_id}",
        headers={"Authorization": f"Thing {key}"},
        timeout=10,
    )


def things_named(platform: Platform, name: str) -> list[dict[str, Any]]:
    page = platform.ok("GET", "things", "/things", params={"name": name, "limit": 100}).json()
    return [t for t in page.get("things") or [] if t["name"] == name]


def configs_of(platform: Platform, external_id: str) -> list[dict[str, Any]]:
    page = platform.ok("GET", "bootstrap", "/things/configs", params={"limit": 100}).json()
    return [c for c in page.get("configs") or [] if c["external_id"] == external_id]


def attempts_of(running: Running, external_id: str) -> list[Any]:
    return [
        o
        for o in running.of("thing.bootstrap")
        if o.event is not None and o.event.fields.get("external_id") == external_id
    ]


async def served(deployment: Deployment, external_id: str, key: str) -> httpx.Response:
    answer = fetch(deployment, external_id, key)
    deadline = asyncio.get_running_loop().time() + 20
    while answer.status_code != 200 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        answer = fetch(deployment, external_id, key)
    return answer


async def test_an_enrolled_device_is_provisioned_on_its_first_attempt(
    platform: Platform, run_reactor: RunReactor, deployment: Deployment, tmp_path: Path, monkeypatch: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    async with run_reactor(**layout(tmp_path, tag, monkeypatch)) as running:
        refused = fetch(deployment, f"zt-{tag}", f"key-{tag}")
        assert refused.status_code == 404
        answer = await served(deployment, f"zt-{tag}", f"key-{tag}")

        def provisioned_now() -> list[Any]:  # settled just after the platform's last answer
            return [o for o in attempts_of(running, f"zt-{tag}") if o.rules and o.rules[0].steps]

        with contextlib.suppress(AssertionError):  # the assertion below says what is missing
            await eventually(lambda: bool(provisioned_now()), 10, "the provisioning outcome")
        provisioned = provisioned_now()
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert sorted(c["name"] for c in body["channels"]) == [f"zt-{tag}-control", f"zt-{tag}-data"]
    assert json.loads(body["content"]) == {"broker": "mqtt://broker:1883", "site": "lab"}
    assert platform.connected_channels(body["thing_id"]) == {c["id"] for c in body["channels"]}
    assert platform.config(body["thing_id"])["state"] == 1
    assert [t["metadata"] for t in things_named(platform, f"zt-{tag}")] == [{"site": "lab"}]
    assert provisioned
    assert provisioned[0].dead_letter is None, provisioned[0].dead_letter


async def test_a_group_device_is_provisioned_with_its_derived_key(
    platform: Platform, run_reactor: RunReactor, deployment: Deployment, tmp_path: Path, monkeypatch: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    external_id = f"fa-{tag}-0042"
    key = derive_key(f"group-secret-{tag}", external_id)
    async with run_reactor(**layout(tmp_path, tag, monkeypatch)):
        assert fetch(deployment, external_id, key).status_code == 404
        answer = await served(deployment, external_id, key)
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.json()["content"])["site"] == "factory"
    [config] = configs_of(platform, external_id)
    assert config["external_key"] == key


async def test_an_unenrolled_device_creates_nothing_and_the_audit_says_why(
    platform: Platform, run_reactor: RunReactor, deployment: Deployment, tmp_path: Path, monkeypatch: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    stranger = f"stranger-{tag}"
    async with run_reactor(**layout(tmp_path, tag, monkeypatch)) as running:
        assert fetch(deployment, stranger, "whatever-key").status_code == 404
        await eventually(lambda: bool(attempts_of(running, stranger)), 20, "the attempt settled")
        [outcome] = attempts_of(running, stranger)
        audit = running.reactor.audit
        assert audit is not None
        await asyncio.sleep(0.5)  # the audit sink writes after the outcome
        rows = await audit.query(rule="zero-touch-provision", failed_only=True)
    assert things_named(platform, stranger) == []
    assert configs_of(platform, stranger) == []
    assert outcome.dead_letter is not None
    assert "not enrolled" in outcome.dead_letter.error
    assert any(f"{stranger!r} is not enrolled" in r.error for r in rows), rows


async def test_fifty_attempts_in_a_burst_make_one_thing_and_one_config(
    platform: Platform, run_reactor: RunReactor, deployment: Deployment, tmp_path: Path, monkeypatch: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    async with run_reactor(**layout(tmp_path, tag, monkeypatch)) as running:
        async with httpx.AsyncClient(timeout=10) as device:
            url = f"{deployment.url('bootstrap')}/things/bootstrap/zt-{tag}"
            headers = {"Authorization": f"Thing key-{tag}"}
            await asyncio.gather(*(device.get(url, headers=headers) for _ in range(50)))
        await eventually(lambda: len(attempts_of(running, f"zt-{tag}")) >= 50, 30, "50 attempts settled")
        answer = await served(deployment, f"zt-{tag}", f"key-{tag}")
    assert answer.status_code == 200
    assert len(things_named(platform, f"zt-{tag}")) == 1
    assert len(configs_of(platform, f"zt-{tag}")) == 1
    fired = [
        o for o in attempts_of(running, f"zt-{tag}") if any(not s.skipped for r in o.rules for s in r.steps)
    ]
    assert len(fired) == 1, "one provisioning, the other attempts throttled"


@contextlib.asynccontextmanager
async def failing_activation(upstream: str) -> AsyncIterator[str]:
    """A private proxy in front of the real bootstrap service that refuses every activation
    (``PUT /things/state/{id}``, 400) and passes everything else through."""
    client = httpx.AsyncClient(timeout=10)

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "PUT" and request.path.startswith("/things/state/"):
            return web.json_response({"error": "injected fault", "message": "activation refused"}, status=400)
        answer = await client.request(
            request.method,
            f"{upstream}{request.path_qs}",
            content=await request.read(),
            headers={k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")},
        )
        headers = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "location")}
        return web.Response(status=answer.status_code, body=answer.content, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await client.aclose()


async def test_a_failure_at_activation_removes_what_was_created(
    platform: Platform, run_reactor: RunReactor, deployment: Deployment, tmp_path: Path, monkeypatch: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    sections = layout(tmp_path, tag, monkeypatch)
    async with failing_activation(deployment.url("bootstrap")) as bootstrap:
        supermq = {"bootstrap_url": bootstrap}
        async with run_reactor(**sections, supermq=supermq, retry={"attempts": 1}) as running:
            assert fetch(deployment, f"zt-{tag}", f"key-{tag}").status_code == 404
            await eventually(lambda: bool(attempts_of(running, f"zt-{tag}")), 20, "the attempt settled")
            [outcome] = attempts_of(running, f"zt-{tag}")
    letter = outcome.dead_letter
    assert letter is not None
    assert "failed at step 'activate'" in letter.error
    assert "NOT removed" not in letter.error
    assert letter.rule == "zero-touch-provision"
    assert configs_of(platform, f"zt-{tag}") == []
    assert things_named(platform, f"zt-{tag}") == [], (
        "Mainflux lists enabled things only: the thing is disabled"
    )
    channels = platform.ok("GET", "things", "/channels", params={"name": f"zt-{tag}-data"}).json()
    assert not channels.get("channels"), "the channel is disabled again"
    assert fetch(deployment, f"zt-{tag}", f"key-{tag}").status_code == 404
