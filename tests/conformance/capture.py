"""Capture what the real Mainflux publishes: a scripted scenario against the deployment, then every
entry of its event streams, byte for byte, into ``tests/events/fixtures/``.

``python -m tests.conformance.capture`` builds and starts the deployment, runs the scenario and
writes the fixture that ``tests/events/test_mainflux_captured.py`` decodes (no deployment needed
there). The conformance suite runs the scenario again and requires the same shapes, so the
fixture cannot drift from what the platform really does.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import redis

from reactor.certs.ca import LocalCA
from tests.conformance.deployment import Build, Deployment, NoDeploymentError, locate_tarball
from tests.conformance.platform import Platform

FIXTURE = Path(__file__).resolve().parents[1] / "events" / "fixtures" / "mainflux-59bcb72f52c0.jsonl"
STREAMS = ("mainflux.users", "mainflux.things", "mainflux.bootstrap")


def scenario(p: Platform) -> None:
    """Every operation the reactor's rules and actions meet, as an operator and a device do them."""
    ca = LocalCA("Capture CA")
    thing = p.thing("captured")
    ctrl = p.channel("ctrl", {"type": "control"})
    data = p.channel("data")  # no metadata
    cert, key, _, _ = ca.issue(thing["credentials"]["secret"], thing["id"], 30 * 86_400.0)
    p.ok(
        "POST",
        "bootstrap",
        "/things/configs",
        json={
            "thing_id": thing["id"],
            "external_id": "cap-ext",
            "external_key": "cap-key",
            "channels": [ctrl, data],
            "name": "captured",
            "content": '{"mode":"eco"}',
            "client_cert": cert,
            "client_key": key,
            "ca_cert": ca.pem,
        },
    )
    tid = thing["id"]
    p.config(tid)  # config.list with the whole config
    p.ok("GET", "bootstrap", "/things/configs", params={"limit": 10})  # config.list without ids
    p.ok(
        "PUT", "bootstrap", f"/things/configs/{tid}", json={"name": "captured", "content": '{"mode":"eco2"}'}
    )
    p.ok("PUT", "bootstrap", f"/things/configs/connections/{tid}", json={"channels": [ctrl]})
    p.ok(
        "PATCH",
        "bootstrap",
        f"/things/configs/certs/{tid}",
        json={"client_cert": cert, "client_key": key, "ca_cert": ca.pem},
    )
    p.ok("PUT", "bootstrap", f"/things/state/{tid}", json={"state": 1})  # connects: policies.add
    dev = {"Authorization": "Thing cap-key"}
    assert p.http.get(f"{p.d.url('bootstrap')}/things/bootstrap/cap-ext", headers=dev).status_code == 200
    bad = {"Authorization": "Thing wrong"}
    assert p.http.get(f"{p.d.url('bootstrap')}/things/bootstrap/cap-ext", headers=bad).status_code == 403
    p.ok("PUT", "bootstrap", f"/things/configs/connections/{tid}", json={"channels": [ctrl, data]})
    p.ok("POST", "things", "/disconnect", json={"subjects": [tid], "objects": [data]})
    p.ok("PUT", "bootstrap", f"/things/state/{tid}", json={"state": 0})
    p.ok("GET", "things", f"/things/{tid}")
    p.ok("GET", "things", f"/channels/{ctrl}")
    p.ok("POST", "things", f"/channels/{data}/disable")  # channel.remove (disabled) → channel.remove_handler
    p.ok("POST", "things", f"/channels/{data}/enable")  # channel.remove (enabled) → handler with no id
    p.ok("POST", "things", f"/things/{tid}/disable")  # thing.remove (disabled) → config.remove_handler
    p.ok("POST", "things", f"/things/{tid}/enable")  # thing.remove (enabled) → config.remove_handler ""
    other = p.device(n_channels=1)
    p.ok("DELETE", "bootstrap", f"/things/configs/{other.thing_id}")  # config.remove


def _value(raw: bytes) -> Any:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(raw).decode("ascii")}


def stream_ends(url: str) -> dict[str, str]:
    """The newest entry id of each stream now ("0-0" for none)."""
    client: Any = redis.Redis.from_url(url)  # bytes replies: values as published
    try:
        ends = {}
        for stream in STREAMS:
            newest = client.xrevrange(stream, count=1)
            ends[stream] = newest[0][0].decode() if newest else "0-0"
        return ends
    finally:
        client.close()


def read_streams(url: str, after: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The entries of the deployment's streams after ``after``, in order, values as published."""
    client: Any = redis.Redis.from_url(url)  # bytes replies: values as published
    try:
        out = []
        for stream in STREAMS:
            since = (after or {}).get(stream, "0-0")
            for entry_id, fields in client.xrange(stream, min=f"({since}"):
                out.append(
                    {
                        "stream": stream,
                        "id": entry_id.decode(),
                        "fields": {k.decode(): _value(v) for k, v in fields.items()},
                    }
                )
        return out
    finally:
        client.close()


def shapes(entries: list[dict[str, Any]]) -> set[tuple[str, str, tuple[str, ...]]]:
    """(stream, operation, field names) of each entry: what must not drift."""
    return {(e["stream"], str(e["fields"].get("operation")), tuple(sorted(e["fields"]))) for e in entries}


def capture(deployment: Deployment) -> list[dict[str, Any]]:
    platform = Platform(deployment)
    ends = stream_ends(deployment.events_url)
    try:
        scenario(platform)
    finally:
        platform.close()
    return read_streams(deployment.events_url, ends)


def main() -> int:
    try:
        build = Build(locate_tarball())
        build.ensure()
        deployment = Deployment(build)
        deployment.start()
    except NoDeploymentError as exc:
        print(f"capture: {exc}", file=sys.stderr)
        return 1
    try:
        entries = capture(deployment)
    finally:
        deployment.stop()
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries), encoding="utf-8")
    print(f"{len(entries)} events written to {FIXTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
