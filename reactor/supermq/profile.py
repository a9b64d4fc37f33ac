"""API profiles: where each operation lives in one SuperMQ era, and what it publishes.

The client speaks in operations (``config_certs(id)``); a profile turns them into (service,
method, path), the request body where eras differ, and the event the platform publishes for the
call (``echo``: the reactor's own calls come back as events, see ``reactor.events.echoes``).

- ``mainflux``: Mainflux up to the Magistrala rename (2023; verified against a real deployment
  of absmach/mainflux 59bcb72f52c0, tag 0.13.0 + 150 commits). Connect/disconnect take the
  policies body ``{"subjects","objects","actions"}``; a config view publishes ``config.list``.
- ``things``: Magistrala v0.14-v0.15 (read from absmach/supermq at tag v0.14.0). Connect takes one
  ``{"thing_id","channel_id"}`` pair a call; a repeated connect answers 409.
- ``clients``: SuperMQ HEAD (absmach/supermq 791e084, 2026-04, which reports v0.19.1, and the
  certs service absmach/certs 5d65013): every route under ``/{domainID}/``, clients (9006) and
  channels (9005) apart, connect with ``client_ids``/``channel_ids``/``types``, certificates
  issued by entity and revoked by serial, ``username``/``password`` logins. (``profile_clients.py``)
- ``auto``: the client reads the services' ``/health`` (``detect``) and picks one of the above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from reactor.errors import ConfigError

Service = Literal["users", "things", "clients", "channels", "bootstrap", "certs", "http"]


def _seg(value: str) -> str:
    """A path segment, escaped (an id may never smuggle in a ``/`` or ``?``)."""
    return quote(str(value), safe="")


@dataclass(frozen=True, slots=True)
class Endpoint:
    service: Service
    method: str
    path: str
    #: The canonical operation the platform publishes when this call succeeds ("" for none).
    echo: str = ""


@dataclass(frozen=True, slots=True)
class Call:
    """One request of an operation that an era spreads over one or several calls."""

    endpoint: Endpoint
    body: dict[str, Any]
    #: How many events the call publishes (``Endpoint.echo`` once per pair it connects).
    echoes: int = 1


class ThingsProfile:
    """Magistrala v0.14.0 (``openapi/magistrala-v0.14.0``): things, channels, bootstrap, certs."""

    name = "things"
    #: ``Authorization: <scheme> <key>`` for the device's own calls (fetch, publish).
    device_scheme = "Thing"
    #: Whether one certificate can be revoked by its serial (v0.14: only all of a thing's).
    revokes_by_serial = False
    #: Whether the http adapter takes a subtopic after the channel (and why not, when not).
    publishes_subtopics = True
    no_subtopics = ""

    # users
    def token_issue(self) -> Endpoint:
        return Endpoint("users", "POST", "/users/tokens/issue")

    def token_refresh(self) -> Endpoint:
        return Endpoint("users", "POST", "/users/tokens/refresh")

    @staticmethod
    def login_body(identity: str, secret: str, domain_id: str) -> dict[str, str]:
        body = {"identity": identity, "secret": secret}
        return body | ({"domain_id": domain_id} if domain_id else {})

    @staticmethod
    def refresh_body(domain_id: str) -> dict[str, str]:
        return {"domain_id": domain_id} if domain_id else {}

    # bootstrap
    #: What a config view publishes (bootstrap/events/producer/streams.go View).
    view_echo = "config.view"
    #: What enabling or disabling a thing publishes (things/events/streams.go).
    status_echo = "thing.change_status"

    def configs(self) -> Endpoint:
        return Endpoint("bootstrap", "GET", "/things/configs", "config.list")

    def config(self, method: str, config_id: str) -> Endpoint:
        echo = {"GET": self.view_echo, "PUT": "config.update", "DELETE": "config.remove"}.get(method, "")
        return Endpoint("bootstrap", method, f"/things/configs/{_seg(config_id)}", echo)

    def config_certs(self, config_id: str) -> Endpoint:
        return Endpoint("bootstrap", "PATCH", f"/things/configs/certs/{_seg(config_id)}", "cert.update")

    def config_connections(self, config_id: str) -> Endpoint:
        path = f"/things/configs/connections/{_seg(config_id)}"
        return Endpoint("bootstrap", "PUT", path, "thing.update_connections")

    def config_state(self, config_id: str) -> Endpoint:
        return Endpoint("bootstrap", "PUT", f"/things/state/{_seg(config_id)}", "thing.change_state")

    def device_config(self, external_id: str) -> Endpoint:
        """The device's own fetch (``Authorization: Thing <external key>``): the only answer that
        carries the config's certificates (views leave them out, bootstrap/api/endpoint.go)."""
        return Endpoint("bootstrap", "GET", f"/things/bootstrap/{_seg(external_id)}", "thing.bootstrap")

    # things and channels
    def thing(self, thing_id: str) -> Endpoint:
        return Endpoint("things", "GET", f"/things/{_seg(thing_id)}", "thing.view")

    def thing_status(self, thing_id: str, enable: bool) -> Endpoint:
        path = f"/things/{_seg(thing_id)}/{'enable' if enable else 'disable'}"
        return Endpoint("things", "POST", path, self.status_echo)

    def connections(self, thing_id: str, channel_ids: list[str], connect: bool) -> list[Call]:
        """v0.14.0 (things/api/http/requests.go connectThingReq): one pair a call."""
        ep = Endpoint("things", "POST", "/connect" if connect else "/disconnect")
        return [Call(ep, {"thing_id": thing_id, "channel_id": c}) for c in channel_ids]

    @staticmethod
    def already_connected(status: int, message: str = "") -> bool:
        """A repeated connect: v0.14.0 answers 409 (the policy exists)."""
        return status == 409

    def channel(self, channel_id: str) -> Endpoint:
        return Endpoint("things", "GET", f"/channels/{_seg(channel_id)}", "channel.view")

    # provisioning: create, find by name, remove (reactor.provision)
    def things_create(self) -> Endpoint:
        return Endpoint("things", "POST", "/things")

    def things_list(self) -> Endpoint:
        return Endpoint("things", "GET", "/things")

    def thing_remove(self, thing_id: str) -> Endpoint:
        """v0.14.0 deletes a thing for good (``DELETE /things/{id}``, 204)."""
        return Endpoint("things", "DELETE", f"/things/{_seg(thing_id)}", "thing.remove")

    def channels_create(self) -> Endpoint:
        return Endpoint("things", "POST", "/channels")

    def channels_list(self) -> Endpoint:
        return Endpoint("things", "GET", "/channels")

    def channel_remove(self, channel_id: str) -> Endpoint:
        return Endpoint("things", "DELETE", f"/channels/{_seg(channel_id)}", "channel.remove")

    def config_add(self) -> Endpoint:
        return Endpoint("bootstrap", "POST", "/things/configs", "config.create")

    @staticmethod
    def config_add_body(config: Mapping[str, Any]) -> dict[str, Any]:
        """The body of ``config_add`` (v0.14.0 and Mainflux: ``thing_id`` as given)."""
        return dict(config)

    #: Whether ``configs()`` filters by ``external_id`` (v0.14.0 bootstrap/api/transport.go).
    configs_by_external_id = True
    #: The channel listing's extra query: v0.14.0 deletes channels, so it lists what exists.
    channels_query: dict[str, str] = {}

    def channel_enable(self, channel_id: str) -> Endpoint:
        return Endpoint("things", "POST", f"/channels/{_seg(channel_id)}/enable")

    # certs
    def cert_issue(self) -> Endpoint:
        return Endpoint("certs", "POST", "/certs")

    def issue_call(self, thing_id: str, ttl: str, common_name: str) -> Call:
        """v0.14.0 certs/api/requests.go addCertsReq: the thing id in the body; CN = its key."""
        return Call(self.cert_issue(), {"thing_id": thing_id, "ttl": ttl})

    def serials_query(self, thing_id: str) -> dict[str, str]:
        return {}

    def revoke(self, serial: str) -> Endpoint:
        """One certificate by serial: v0.14's certs API has no such call (``revokes_by_serial``)."""
        raise ConfigError(f"the {self.name} profile's certs API cannot revoke one certificate by serial")

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


class MainfluxProfile(ThingsProfile):
    """Mainflux up to the Magistrala rename (2023), as absmach/mainflux 59bcb72f52c0 serves it."""

    name = "mainflux"
    view_echo = "config.list"  # View publishes configList with the whole config

    def thing_status(self, thing_id: str, enable: bool) -> Endpoint:
        """Enable and disable publish ``thing.remove`` with a status (things/clients/events/
        streams.go), decoded as ``thing.enable`` / ``thing.remove``; a disable also makes the
        bootstrap service delete the thing's config (its event consumer)."""
        path = f"/things/{_seg(thing_id)}/{'enable' if enable else 'disable'}"
        return Endpoint("things", "POST", path, "thing.enable" if enable else "thing.remove")

    def connections(self, thing_id: str, channel_ids: list[str], connect: bool) -> list[Call]:
        """things/policies/api/http/requests.go: subjects x objects in one call; the policy
        actions a thing needs to publish and subscribe. Each pair publishes ``policies.add``."""
        if not channel_ids:
            return []
        path, echo = ("/connect", "policy.add") if connect else ("/disconnect", "policy.remove")
        body: dict[str, Any] = {"subjects": [thing_id], "objects": list(channel_ids)}
        if connect:
            body["actions"] = ["m_read", "m_write"]
        return [Call(Endpoint("things", "POST", path, echo), body, echoes=len(channel_ids))]

    # provisioning: Mainflux has no DELETE for things or channels (things/clients/api/transport.go,
    # things/groups/api/transport.go at 59bcb72f52c0): removing is disabling, and disabling a
    # thing makes the bootstrap service delete its config (its event consumer).
    configs_by_external_id = False  # bootstrap/api/transport.go reads only offset, limit, state, name
    #: A disabled channel keeps its name (groups: ``UNIQUE (owner_id, name)``, things/postgres/
    #: init.go): list it too, so that it is enabled again rather than created a second time (409).
    channels_query = {"status": "all"}

    def thing_remove(self, thing_id: str) -> Endpoint:
        return self.thing_status(thing_id, False)

    def channel_remove(self, channel_id: str) -> Endpoint:
        return Endpoint("things", "POST", f"/channels/{_seg(channel_id)}/disable")

    @staticmethod
    def already_connected(status: int, message: str = "") -> bool:
        return False  # a repeated connect is an upsert: 200 (things/policies/postgres/policies.go)


PROFILES: dict[str, type[ThingsProfile]] = {"things": ThingsProfile, "mainflux": MainfluxProfile}


def profile_for(health: dict[str, Any]) -> tuple[str, str]:
    """The profile a service's ``/health`` answer points to, and why (``ConfigError`` for an era
    the reactor does not speak). Mainflux answers ``version`` 0.13.0 and earlier, Magistrala
    0.14.x-0.15.x; SuperMQ 0.16+ moved things into clients and domains. SuperMQ HEAD (bootstrap
    re-added by ef5c253c5 after the v0.19.1 tag) stamps ``git describe --tags``: v0.19.1; v0.17
    to v0.19.1 themselves have no bootstrap service (removed by df5d752c4), so only HEAD answers
    on bootstrap's port with 0.19."""
    version = str(health.get("version", "")).lstrip("v")
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise ConfigError(
            f'supermq.profile = "auto": /health reports no version ({version!r}); set supermq.profile'
        ) from None
    what = f"{health.get('description') or 'service'} reports version {version}"
    if (major, minor) == (0, 0):  # supermq health.go's default: a build without -ldflags
        raise ConfigError(
            f'supermq.profile = "auto": {what}; 0.0.0 is no release (a build without its version '
            "stamped, as SuperMQ's Makefile does): set supermq.profile"
        )
    if (major, minor) == (0, 13):  # the 2023 code stamps its last tag, 0.13.0
        return "mainflux", f"{what} (Mainflux 0.13, as verified at 59bcb72f52c0)"
    if (major, minor) < (0, 13):
        raise ConfigError(
            f'supermq.profile = "auto": {what}; Mainflux before 0.13 is not supported '
            "(set supermq.profile to use one anyway)"
        )
    if (major, minor) <= (0, 15):
        return "things", f"{what} (Magistrala v0.14-v0.15)"
    if (major, minor) == (0, 19):  # HEAD stamps v0.19.1; v0.19 itself has no bootstrap to answer
        return "clients", f"{what} (SuperMQ HEAD, clients and domains)"
    if (major, minor) > (0, 19):
        raise ConfigError(
            f'supermq.profile = "auto": {what}, newer than the SuperMQ the reactor was verified '
            'against (HEAD 791e084 reports v0.19.1): set supermq.profile = "clients" to use it anyway'
        )
    raise ConfigError(
        f'supermq.profile = "auto": {what}; SuperMQ v0.16-v0.18 is not supported (v0.16 logs in '
        "with identity/secret and has the older certs API; v0.17-v0.18 have no bootstrap service): "
        'set supermq.profile = "clients" to try HEAD\'s API on it anyway'
    )
