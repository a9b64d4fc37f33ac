"""SuperMQ's operations and streams across eras: canonical names, aliases, stream families.

Canonical names are the things-era names of the event catalogue (``thing.*``, ``channel.*``,
``config.*``, ``policy.*``), because that is what the bootstrap flow speaks. Every other spelling
SuperMQ has published is an alias (from the services' ``events/streams.go`` across the tags of
absmach/supermq and absmach/mainflux):

- ``thing.state_change`` (until 2023-06) and ``thing.change_state`` → ``thing.change_state``;
- ``bootstrap.``-prefixed names (Magistrala v0.15+, SuperMQ HEAD) → the name without the prefix;
- ``client.*`` (SuperMQ v0.16+, where things became clients) → ``thing.*``; at HEAD bootstrap's
  ``bootstrap.client.connect`` (its channels consumer connected a client) → ``thing.connect``;
- ``policies.*`` (code) and ``policy.*`` (docs) → ``policy.*``, with ``delete`` → ``remove``;
- ``group.*`` on a things/clients/channels/bootstrap stream (channels are groups from 2023-12) and
  ``channels.*`` → ``channel.*``; ``group.*`` on the users stream stays a user group;
- MQTT adapter events without an operation (``event_type`` connect/disconnect) → ``mqtt.connect``;
- Mainflux's ``thing.remove`` / ``channel.remove`` with ``status = "enabled"`` → ``thing.enable`` /
  ``channel.enable`` (``refine_operation``; with ``disabled`` they stay removals, as bootstrap
  treats them: it deletes the config).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from reactor.settings import DEFAULT_FAMILIES

EVENTS_PREFIX = "events."

# Services whose ``group.*`` events are about channels (things era: channels are groups).
_CHANNEL_GROUP_SERVICES = frozenset(
    {"things", "thing", "clients", "client", "channels", "channel", "bootstrap"}
)
# Bootstrap handler operations that name channels as groups on any stream.
_CHANNEL_GROUP_OPS = frozenset({"remove_handler", "update_handler", "assign", "unassign"})
_ENTITY_ALIASES = {
    "client": "thing",
    "clients": "thing",
    "things": "thing",
    "policies": "policy",
    "channels": "channel",
}
_ACTION_ALIASES = {
    ("thing", "state_change"): "change_state",
    ("policy", "delete"): "remove",
}

CANONICAL_OPERATIONS = frozenset(
    {
        # users service
        *(
            f"user.{op}"
            for op in (
                "create",
                "update",
                "update_tags",
                "update_identity",
                "update_secret",
                "update_owner",
                "remove",
                "view",
                "view_profile",
                "list",
                "list_by_group",
                "identify",
                "generate_reset_token",
                "issue_token",
                "refresh_token",
                "reset_secret",
                "send_password_reset",
            )
        ),
        *(f"group.{op}" for op in ("create", "update", "remove", "view", "list", "list_by_user")),
        *(f"policy.{op}" for op in ("authorize", "add", "update", "remove", "list")),
        # things / clients service
        *(
            f"thing.{op}"
            for op in (
                "create",
                "update",
                "update_secret",
                "update_tags",
                "update_owner",
                "change_status",
                "enable",
                "disable",
                "remove",
                "view",
                "view_perms",
                "list",
                "list_by_channel",
                "list_by_user",
                "identify",
                "authorize",
                "share",
                "unshare",
                "set_parent",
                "remove_parent",
            )
        ),
        *(
            f"channel.{op}"
            for op in (
                "create",
                "update",
                "remove",
                "view",
                "list",
                "list_by_thing",
                "assign",
                "unassign",
                "connect",
                "disconnect",
                "enable",
                "disable",
                "update_tags",  # SuperMQ HEAD channels/events/events.go
                "list_by_user",
                "set_parent",
                "remove_parent",
            )
        ),
        # bootstrap service
        *(f"config.{op}" for op in ("create", "update", "remove", "view", "list", "remove_handler")),
        "thing.bootstrap",
        "thing.change_state",
        "thing.update_connections",
        "thing.connect",  # SuperMQ HEAD bootstrap.client.connect (ConnectClientHandler)
        "thing.disconnect",
        "channel.remove_handler",
        "channel.update_handler",
        "cert.update",
        # mqtt adapter
        "mqtt.connect",
        "mqtt.disconnect",
    }
)


@dataclass(frozen=True, slots=True)
class StreamName:
    """A stream name split into its parts: ``events.magistrala.things`` → family, service."""

    name: str
    family: str
    service: str


@lru_cache(maxsize=1024)  # a handful of streams, one parse each
def parse_stream(name: str, families: tuple[str, ...] = DEFAULT_FAMILIES) -> StreamName:
    """Split a stream, subject or routing key into family and service.

    ``events.supermq.client.create`` has family ``supermq`` and service ``client``; a name outside
    the known families keeps an empty family and its first segment as the service.
    """
    rest = name.removeprefix(EVENTS_PREFIX)
    family, _, tail = rest.partition(".")
    if family in families and tail:
        return StreamName(name, family, tail.split(".", 1)[0])
    return StreamName(name, "", rest.split(".", 1)[0])


@lru_cache(maxsize=1024)  # a bounded number of streams (redis.max_streams), one answer each
def per_operation_service(name: str, family: str, service: str) -> str | None:
    """``service`` when ``name`` is one of its per-operation streams (SuperMQ HEAD:
    ``events.supermq.client.create``, ``events.magistrala.bootstrap.config.create``, and
    bootstrap's ``events.bootstrap.config.update`` without a family), else None (one stream per
    service: ``events.magistrala.things``, ``supermq.bootstrap``)."""
    rest = name.removeprefix(EVENTS_PREFIX)
    if family:
        rest = rest.removeprefix(family + ".")
    return service if rest.startswith(service + ".") else None


@lru_cache(maxsize=4096)
def canonical_operation(raw: str, service: str = "") -> str:
    """The canonical name of ``raw`` as published on a stream of ``service``."""
    op = raw.strip()
    if op.startswith("bootstrap.") and op.count(".") >= 2:
        op = op.removeprefix("bootstrap.")
    entity, dot, action = op.partition(".")
    if not dot:
        return mqtt_operation(op) if service == "mqtt" and op else op
    entity = _ENTITY_ALIASES.get(entity, entity)
    if entity == "group" and (service in _CHANNEL_GROUP_SERVICES or action in _CHANNEL_GROUP_OPS):
        entity = "channel"
    action = _ACTION_ALIASES.get((entity, action), action)
    return f"{entity}.{action}"


#: Mainflux (2023) has no delete of things or channels: ``thing.remove`` / ``channel.remove`` are
#: published on disable AND on enable, with ``status`` saying which (things/clients/events/
#: streams.go ``delete``). An enable is not a removal.
_STATUS_OPERATIONS = {
    ("thing.remove", "enabled"): "thing.enable",
    ("channel.remove", "enabled"): "channel.enable",
}


def refine_operation(op: str, status: object) -> str:
    """``op`` as the event's ``status`` field makes it mean (``thing.remove`` + enabled = enable)."""
    if status is None or op not in ("thing.remove", "channel.remove"):
        return op
    return _STATUS_OPERATIONS.get((op, str(status).strip().lower()), op)


def mqtt_operation(event_type: str) -> str:
    """The canonical operation of an MQTT adapter event that carries ``event_type`` instead."""
    return f"mqtt.{event_type.strip().lower()}"
