"""The test's own hands on the real platform: an admin client that sets up devices and reads the
real state back (never through the reactor's client, so the reactor cannot vouch for itself)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conformance.deployment import ACCESS_TTL_S, ADMIN_EMAIL, ADMIN_SECRET, Deployment


@dataclass
class Device:
    thing_id: str
    thing_key: str
    external_id: str
    external_key: str
    channels: list[str]


class Platform:
    """Admin calls on the deployment; logs in again whenever the (short-lived) token expired."""

    def __init__(self, deployment: Deployment) -> None:
        self.d = deployment
        self.http = httpx.Client(timeout=10)
        self._token = ""
        self._issued = 0.0

    def close(self) -> None:
        self.http.close()

    def login(self) -> str:
        answer = self.http.post(
            f"{self.d.url('users')}/users/tokens/issue",
            json={"identity": ADMIN_EMAIL, "secret": ADMIN_SECRET},
        )
        answer.raise_for_status()
        self._token, self._issued = answer.json()["access_token"], time.monotonic()
        return self._token

    def call(self, method: str, service: str, path: str, **kwargs: Any) -> httpx.Response:
        if time.monotonic() - self._issued > ACCESS_TTL_S - 1:
            self._token = ""  # expired: Mainflux does not always say so with a 401
        for _ in range(2):
            headers = {"Authorization": f"Bearer {self._token or self.login()}", **kwargs.pop("headers", {})}
            answer = self.http.request(method, f"{self.d.url(service)}{path}", headers=headers, **kwargs)
            if answer.status_code != 401 and b"code = Unauthenticated" not in answer.content:
                return answer  # (Mainflux answers 500 for an expired token)
            self._token = ""
        return answer

    def ok(self, method: str, service: str, path: str, **kwargs: Any) -> httpx.Response:
        answer = self.call(method, service, path, **kwargs)
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer

    # ---- set-up -------------------------------------------------------------------------------

    def thing(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.ok("POST", "things", "/things", json={"name": name}).json()
        return body

    def channel(self, name: str, metadata: dict[str, Any] | None = None) -> str:
        """A channel (named uniquely: Mainflux refuses a second channel of one owner by a name, 409)."""
        body: dict[str, Any] = {"name": f"{name}-{uuid.uuid4().hex[:6]}"} | (
            {"metadata": metadata} if metadata is not None else {}
        )
        channel_id: str = self.ok("POST", "things", "/channels", json=body).json()["id"]
        return channel_id

    def device(self, n_channels: int = 2, *, content: str = '{"mode":"eco"}', **certs: str) -> Device:
        """A thing, its channels and its bootstrap config (inactive), as an operator makes them."""
        tag = uuid.uuid4().hex[:8]
        thing = self.thing(f"gw-{tag}")
        channels = [self.channel(f"ch{i}-{tag}") for i in range(n_channels)]
        device = Device(thing["id"], thing["credentials"]["secret"], f"ext-{tag}", f"key-{tag}", channels)
        self.ok(
            "POST",
            "bootstrap",
            "/things/configs",
            json={
                "thing_id": device.thing_id,
                "external_id": device.external_id,
                "external_key": device.external_key,
                "channels": channels,
                "name": f"gw-{tag}",
                "content": content,
                **certs,
            },
        )
        return device

    # ---- the real state -----------------------------------------------------------------------

    def config(self, thing_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.ok("GET", "bootstrap", f"/things/configs/{thing_id}").json()
        return body

    def config_status(self, thing_id: str) -> int:
        return self.call("GET", "bootstrap", f"/things/configs/{thing_id}").status_code

    def connected_channels(self, thing_id: str) -> set[str]:
        answer = self.ok("GET", "things", f"/things/{thing_id}/channels", params={"limit": 100}).json()
        return {c["id"] for c in answer.get("channels") or []}

    def device_view(self, device: Device) -> httpx.Response:
        """What the device itself fetches (``Authorization: Thing <external key>``)."""
        return self.http.get(
            f"{self.d.url('bootstrap')}/things/bootstrap/{device.external_id}",
            headers={"Authorization": f"Thing {device.external_key}"},
        )
