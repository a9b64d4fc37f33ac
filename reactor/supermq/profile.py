"""API profiles: where each operation lives in one SuperMQ era.

The client speaks in operations (``config_certs(id)``); a profile turns them into (service,
method, path). Adding SuperMQ's clients/domains era (``openapi/supermq-head``: ``/{domainID}/
clients/configs/...``) is a second class here, chosen by ``supermq.profile``; actions and rules do
not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

Service = Literal["users", "things", "bootstrap", "certs", "http"]


def _seg(value: str) -> str:
    """A path segment, escaped (an id may never smuggle in a ``/`` or ``?``)."""
    return quote(str(value), safe="")


@dataclass(frozen=True, slots=True)
class Endpoint:
    service: Service
    method: str
    path: str


class ThingsProfile:
    """Magistrala v0.14.0 (``openapi/magistrala-v0.14.0``): things, channels, bootstrap, certs."""

    name = "things"

    # users
    def token_issue(self) -> Endpoint:
        return Endpoint("users", "POST", "/users/tokens/issue")

    def token_refresh(self) -> Endpoint:
        return Endpoint("users", "POST", "/users/tokens/refresh")

    # bootstrap
    def configs(self) -> Endpoint:
        return Endpoint("bootstrap", "GET", "/things/configs")

    def config(self, method: str, config_id: str) -> Endpoint:
        return Endpoint("bootstrap", method, f"/things/configs/{_seg(config_id)}")

    def config_certs(self, config_id: str) -> Endpoint:
        return Endpoint("bootstrap", "PATCH", f"/things/configs/certs/{_seg(config_id)}")

    def config_connections(self, config_id: str) -> Endpoint:
        return Endpoint("bootstrap", "PUT", f"/things/configs/connections/{_seg(config_id)}")

    def config_state(self, config_id: str) -> Endpoint:
        return Endpoint("bootstrap", "PUT", f"/things/state/{_seg(config_id)}")

    # things and channels
    def thing(self, thing_id: str) -> Endpoint:
        return Endpoint("things", "GET", f"/things/{_seg(thing_id)}")

    def thing_status(self, thing_id: str, enable: bool) -> Endpoint:
        return Endpoint("things", "POST", f"/things/{_seg(thing_id)}/{'enable' if enable else 'disable'}")

    def connection(self, connect: bool) -> Endpoint:
        return Endpoint("things", "POST", "/connect" if connect else "/disconnect")

    def channel(self, channel_id: str) -> Endpoint:
        return Endpoint("things", "GET", f"/channels/{_seg(channel_id)}")

    # certs
    def cert_issue(self) -> Endpoint:
        return Endpoint("certs", "POST", "/certs")

    def cert(self, method: str, cert_id: str) -> Endpoint:
        return Endpoint("certs", method, f"/certs/{_seg(cert_id)}")

    def serials(self, thing_id: str) -> Endpoint:
        return Endpoint("certs", "GET", f"/serials/{_seg(thing_id)}")

    # http adapter
    def publish(self, channel_id: str, subtopic: str = "") -> Endpoint:
        tail = "/".join(_seg(p) for p in subtopic.strip("/").split("/") if p) if subtopic else ""
        return Endpoint(
            "http", "POST", f"/channels/{_seg(channel_id)}/messages" + (f"/{tail}" if tail else "")
        )


PROFILES = {"things": ThingsProfile}
