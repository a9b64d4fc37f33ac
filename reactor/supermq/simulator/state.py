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
    status: str = "enabled"

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "metadata": self.metadata,
            "status": self.status,
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
        #: The era it plays: "things" (Magistrala v0.14.0), "mainflux" (Mainflux 59bcb72f52c0) or
        #: "clients" (SuperMQ HEAD 791e084: things are clients, every route under the domain).
        self.profile = profile
        #: The one domain a clients-profile simulator serves (its admin is a member of it).
        self.domain_id = new_id()
        #: Connections with their types (the clients profile: publish, subscribe).
        self.typed_connections: set[tuple[str, str, str]] = set()
        self.owner = new_id()  # the admin's user id, as Mainflux names owners
        self.identity = identity
        self.secret = secret
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        #: Refresh tokens past their expiry: Magistrala v0.14.0 still recognises them (a signed JWT
        #: whose ``exp`` has passed) and refuses them differently from a garbled token.
        self.expired_refresh_tokens: set[str] = set()
        self.things: dict[str, Thing] = {}
        self.channels: dict[str, Channel] = {}
        #: Bootstrap's own copy of the channels its configs name (bootstrap/postgres/configs.go
        #: ``channels`` table): at v0.14.0 a config still lists a channel deleted from things.
        self.bootstrap_channels: dict[str, Channel] = {}
        self.connections: set[tuple[str, str]] = set()
        self.configs: dict[str, Config] = {}
        self.certs: dict[str, Cert] = {}
        self.messages: list[dict[str, Any]] = []
        self.effects: list[Effect] = []
        self._seq = itertools.count(1)
        self.ca = LocalCA()

    # ---- tokens -------------------------------------------------------------------------------

    def issue_tokens(self) -> dict[str, str]:
        """A new pair. Magistrala v0.14.0 sends no ``access_type``: auth/service.go accessKey and
        refreshKey return ``Token{AccessToken, RefreshToken}`` and users/api/responses.go tokenRes
        leaves the empty field out (``omitempty``)."""
        access, refresh = f"sim-access-{secrets.token_hex(8)}", f"sim-refresh-{secrets.token_hex(8)}"
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        tokens = {"access_token": access, "refresh_token": refresh}
        return tokens | {"access_type": "Bearer"} if self.mainflux else tokens

    def expire_access_tokens(self) -> None:
        """Every access token stops working (refresh tokens still do)."""
        self.access_tokens.clear()

    def expire_refresh_tokens(self) -> None:
        """Every refresh token issued so far passes its expiry (``MG_AUTH_REFRESH_TOKEN_DURATION``,
        24h in v0.14.0's docker/.env): a refresh with one is refused, not forgotten."""
        self.expired_refresh_tokens |= self.refresh_tokens
        self.refresh_tokens.clear()

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
        self.keep_channels(channels)
        return config

    def keep_channels(self, channel_ids: list[str]) -> None:
        """Bootstrap stores the channels a config names (``insertChannels``)."""
        self.bootstrap_channels |= {c: self.channels[c] for c in channel_ids if c in self.channels}

    def issue_cert(
        self, thing_id: str, ttl_s: float, *, valid_from_s: float = 0.0, common_name: str | None = None
    ) -> Cert:
        """A real X.509 certificate from the simulator CA; CN = thing key, as SuperMQ's certs service
        does (HEAD's takes the CN it is given)."""
        thing = self.things[thing_id]
        cn = thing.key if common_name is None else common_name
        pem, key_pem, serial, not_after = self.ca.issue(cn, thing.id, ttl_s, valid_from_s=valid_from_s)
        cert = Cert(serial, thing_id, pem, key_pem, not_after)
        self.certs[serial] = cert
        return cert

    # ---- the era's views ----------------------------------------------------------------------

    @property
    def mainflux(self) -> bool:
        return self.profile == "mainflux"

    def thing_view(self, thing: Thing, *, with_secret: bool = True) -> dict[str, Any]:
        """A thing as the things service answers. Both eras leave empty fields out (``omitempty``;
        Mainflux things/clients/api/responses.go, Magistrala v0.14.0 pkg/clients/clients.go Client):
        no metadata or tags when empty, and enable/disable answer without the secret (v0.14.0:
        pkg/clients/postgres/clients.go ChangeStatus ``RETURNING`` no secret). Mainflux sends no tags
        and no identity at all."""
        view = thing.view()
        if not thing.metadata:
            view.pop("metadata")
        if self.mainflux:
            view.pop("tags")
            view["credentials"] = {"secret": thing.key} if with_secret else {}
            return view
        if not thing.tags:
            view.pop("tags")
        if not with_secret:
            view["credentials"] = {"identity": thing.name}
        return view

    def channel_view(self, channel: Channel) -> dict[str, Any]:
        """A channel: Mainflux adds ``owner_id``; v0.14.0 (pkg/groups/groups.go Group) leaves empty
        metadata out (``omitempty``)."""
        view = channel.view()
        if self.mainflux:
            return view | {"owner_id": self.owner}
        if not channel.metadata:
            view.pop("metadata")
        return view

    def omit_empty(self, view: dict[str, Any]) -> dict[str, Any]:
        """Bootstrap answers drop empty certificate fields (``omitempty``): Mainflux's, and v0.14.0's
        bootstrap answer (bootstrap/reader.go bootstrapRes) and PATCH certs answer
        (bootstrap/api/responses.go updateConfigRes), which drop an empty ``content`` too."""
        empty = ("client_cert", "client_key", "ca_cert") + (() if self.mainflux else ("content",))
        return {k: v for k, v in view.items() if v != "" or k not in empty}

    def config_channel(self, channel: Channel) -> dict[str, Any]:
        """A channel inside a config view: id, name, metadata (bootstrap/api/responses.go
        channelRes). Both eras serve ``null`` for a channel without metadata: v0.14.0's things
        leaves it out, bootstrap stores ``json.Marshal(nil map)`` (bootstrap/postgres/configs.go
        toDBChannel) and serves the nil map back in an ``interface{}``, which ``omitempty`` keeps."""
        return {"id": channel.id, "name": channel.name, "metadata": channel.metadata or None}

    def config_view(self, config: Config) -> dict[str, Any]:
        """``GET /things/configs/{id}``: the view never fills ``client_cert``/``ca_cert`` (bootstrap/
        api/endpoint.go viewEndpoint, at Mainflux 59bcb72f52c0 and Magistrala v0.14.0 alike). At
        v0.14.0 (bootstrap/api/responses.go viewRes) every field but ``external_id`` and ``state`` is
        ``omitempty``, so a config without channels has no ``channels`` key."""
        thing = self.things.get(config.thing_id)
        known = self.channels if self.mainflux else self.channels | self.bootstrap_channels
        view: dict[str, Any] = {
            "thing_id": config.thing_id,
            "thing_key": thing.key if thing else "",
            "channels": [self.config_channel(known[c]) for c in config.channels if c in known],
            "external_id": config.external_id,
            "external_key": config.external_key,
            "content": config.content,
            "name": config.name,
            "state": config.state,
        }
        if self.mainflux:
            return view
        keep = ("external_id", "state")
        return {k: v for k, v in view.items() if k in keep or v not in ("", [])}

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

    # ---- Magistrala v0.14.0's things service, as bootstrap and /connect meet it ---------------

    def assign(self, thing_id: str, channel_id: str) -> int:
        """Connect as v0.14.0 answers it (internal/groups/service.go Assign): the channel is
        authorized first (unknown or deleted: no permission, 403), then SpiceDB writes the policy,
        whose precondition needs the thing (auth/spicedb/policies.go channelThingPreCondition
        ``MUST_MATCH``: FailedPrecondition, 400) and which a repeated connect finds existing
        (``OPERATION_CREATE``: AlreadyExists, 409); else 201."""
        if channel_id not in self.channels:
            return 403
        if thing_id not in self.things:
            return 400
        return 201 if self.connect(thing_id, channel_id) else 409

    def unassign(self, thing_id: str, channel_id: str) -> int:
        """Disconnect as v0.14.0 answers it (internal/groups/service.go Unassign): 403 for an
        unknown or deleted channel; deleting a policy that does not exist (an unknown thing, a pair
        not connected) is a no-op (``OPERATION_DELETE``), 204."""
        if channel_id not in self.channels:
            return 403
        self.disconnect(thing_id, channel_id)
        return 204

    def known_to_bootstrap(self, channel_id: str) -> bool:
        """A channel bootstrap can name: in things, or already in bootstrap's own ``channels``
        table (bootstrap/postgres/configs.go ListExisting), which keeps a deleted channel until
        its event consumer removes it."""
        return channel_id in self.channels or channel_id in self.bootstrap_channels
