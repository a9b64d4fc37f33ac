"""The simulator's in-memory SuperMQ: things, channels, connections, configs, certs, tokens, messages.

Every state change is appended to ``effects`` (a global sequence number, the device, what
changed), so tests can count effects per device and check their order.
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from reactor.certs.ca import LocalCA


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Thing:
    id: str
    name: str
    key: str
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    status: str = "enabled"

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tags": self.tags,
            "metadata": self.metadata,
            "credentials": {"identity": self.name, "secret": self.key},
            "status": self.status,
            "created_at": "2024-01-29T10:00:00Z",
            "updated_at": "2024-01-29T10:00:00Z",
        }


@dataclass
class Channel:
    id: str
    name: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "metadata": self.metadata,
            "status": "enabled",
            "created_at": "2024-01-29T10:00:00Z",
            "updated_at": "2024-01-29T10:00:00Z",
        }


@dataclass
class Config:
    thing_id: str
    external_id: str
    external_key: str
    name: str = ""
    content: str = ""
    state: int = 0
    channels: list[str] = field(default_factory=list)
    client_cert: str = ""
    client_key: str = ""
    ca_cert: str = ""


@dataclass
class Cert:
    serial: str
    thing_id: str
    pem: str
    key_pem: str
    expiration: str
    revoked: bool = False


@dataclass(frozen=True)
class Effect:
    seq: int
    kind: str
    device: str
    detail: dict[str, Any]


class State:
    """All of the simulated SuperMQ's data."""

    def __init__(
        self,
        identity: str = "admin@example.com",
        secret: str = "12345678",  # noqa: S107
        profile: str = "things",
    ) -> None:
        #: The era it plays: "things" (Magistrala v0.14.0) or "mainflux" (Mainflux 59bcb72f52c0).
        self.profile = profile
        self.owner = new_id()  # the admin's user id, as Mainflux names owners
        self.identity = identity
        self.secret = secret
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.things: dict[str, Thing] = {}
        self.channels: dict[str, Channel] = {}
        self.connections: set[tuple[str, str]] = set()
        self.configs: dict[str, Config] = {}
        self.certs: dict[str, Cert] = {}
        self.messages: list[dict[str, Any]] = []
        self.effects: list[Effect] = []
        self._seq = itertools.count(1)
        self.ca = LocalCA()

    # ---- tokens -------------------------------------------------------------------------------

    def issue_tokens(self) -> dict[str, str]:
        access, refresh = f"sim-access-{secrets.token_hex(8)}", f"sim-refresh-{secrets.token_hex(8)}"
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return {"access_token": access, "refresh_token": refresh, "access_type": "Bearer"}

    def expire_access_tokens(self) -> None:
        """Every access token stops working (refresh tokens still do)."""
        self.access_tokens.clear()

    # ---- effects ------------------------------------------------------------------------------

    def effect(self, kind: str, device: str, **detail: Any) -> None:
        self.effects.append(Effect(next(self._seq), kind, device, detail))

    def effects_of(self, device: str) -> list[Effect]:
        return [e for e in self.effects if e.device == device]

    # ---- seeding (as provision would) ---------------------------------------------------------

    def add_thing(self, name: str = "", thing_id: str = "", key: str = "") -> Thing:
        thing = Thing(thing_id or new_id(), name or "thing", key or new_id())
        self.things[thing.id] = thing
        return thing

    def add_channel(
        self, name: str = "", channel_id: str = "", metadata: dict[str, Any] | None = None
    ) -> Channel:
        channel = Channel(channel_id or new_id(), name or "channel", metadata or {})
        self.channels[channel.id] = channel
        return channel

    def add_config(
        self,
        thing: Thing,
        external_id: str,
        external_key: str,
        channels: list[str],
        content: str = "",
        name: str = "",
    ) -> Config:
        config = Config(thing.id, external_id, external_key, name or thing.name, content, 0, list(channels))
        self.configs[thing.id] = config
        return config

    def issue_cert(self, thing_id: str, ttl_s: float, *, valid_from_s: float = 0.0) -> Cert:
        """A real X.509 certificate from the simulator CA; CN = thing key, as SuperMQ's certs service does."""
        thing = self.things[thing_id]
        pem, key_pem, serial, not_after = self.ca.issue(thing.key, thing.id, ttl_s, valid_from_s=valid_from_s)
        cert = Cert(serial, thing_id, pem, key_pem, not_after)
        self.certs[serial] = cert
        return cert

    # ---- views --------------------------------------------------------------------------------

    # ---- the era's views ----------------------------------------------------------------------

    @property
    def mainflux(self) -> bool:
        return self.profile == "mainflux"

    def thing_view(self, thing: Thing, *, with_secret: bool = True) -> dict[str, Any]:
        """A thing as the things service answers. Mainflux (things/clients/api/responses.go)
        leaves empty fields out (``omitempty``): no identity for a thing made without one, no
        metadata when empty, and enable/disable answer without the secret."""
        view = thing.view()
        if not self.mainflux:
            return view
        view.pop("tags")
        if not thing.metadata:
            view.pop("metadata")
        view["credentials"] = {"secret": thing.key} if with_secret else {}
        return view

    def channel_view(self, channel: Channel) -> dict[str, Any]:
        view = channel.view()
        return view | {"owner_id": self.owner} if self.mainflux else view

    def omit_empty(self, view: dict[str, Any]) -> dict[str, Any]:
        """Mainflux's bootstrap answers drop empty certificate fields (``omitempty``)."""
        if not self.mainflux:
            return view
        return {k: v for k, v in view.items() if v != "" or k not in ("client_cert", "client_key", "ca_cert")}

    def config_channel(self, channel: Channel) -> dict[str, Any]:
        """A channel inside a config view: id, name, metadata (bootstrap/api/responses.go
        channelRes). Mainflux serves ``null`` for a channel created without metadata."""
        metadata = channel.metadata or (None if self.profile == "mainflux" else {})
        return {"id": channel.id, "name": channel.name, "metadata": metadata}

    def config_view(self, config: Config) -> dict[str, Any]:
        """``GET /things/configs/{id}``: the view never fills ``client_cert``/``ca_cert`` (bootstrap/
        api/endpoint.go viewEndpoint, at Mainflux 59bcb72f52c0 and Magistrala v0.14.0 alike)."""
        thing = self.things.get(config.thing_id)
        return {
            "thing_id": config.thing_id,
            "thing_key": thing.key if thing else "",
            "channels": [
                self.config_channel(self.channels[c]) for c in config.channels if c in self.channels
            ],
            "external_id": config.external_id,
            "external_key": config.external_key,
            "content": config.content,
            "name": config.name,
            "state": config.state,
        }

    def connect(self, thing_id: str, channel_id: str) -> bool:
        pair = (thing_id, channel_id)
        if pair in self.connections:
            return False
        self.connections.add(pair)
        self.effect("connect", thing_id, channel=channel_id)
        return True

    def disconnect(self, thing_id: str, channel_id: str) -> None:
        if (thing_id, channel_id) in self.connections:
            self.connections.discard((thing_id, channel_id))
            self.effect("disconnect", thing_id, channel=channel_id)
