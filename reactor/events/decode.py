"""Decoders: every encoding SuperMQ has used → one ``Event``.

Encodings (``../shared/reference/supermq-facts.md`` §1):
- Redis flat fields: every event key a stream field, values strings (eras A/B);
- Redis single ``data`` field holding the JSON of all fields (Magistrala v0.15+);
- bare JSON bytes (as the docs show NATS and RabbitMQ);
- JSON inside protobuf ``messaging.Message`` field 5 or 6 (what NATS/RabbitMQ really carry).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from reactor.errors import DecodeError
from reactor.events import catalogue
from reactor.events.model import NS_PER_S, Event
from reactor.events.normalise import normalise_fields, to_int
from reactor.events.protowire import WireError, unwrap_payload
from reactor.ops.redact import secret_values

_MS_PER_NS = 1_000_000


class Decoder:
    """Turns raw payloads into Events; holds the configured stream families."""

    __slots__ = ("_families",)

    def __init__(self, families: Iterable[str] = catalogue.DEFAULT_FAMILIES) -> None:
        self._families = tuple(families)

    def decode(
        self, payload: Mapping[str, Any] | bytes | str, *, source: str, stream: str, entry_id: str
    ) -> Event:
        """Decode one payload as received from ``stream`` at ``entry_id``.

        A Mapping is a Redis entry (flat fields, or one ``data`` field); bytes or str are a
        message body (bare JSON or protobuf-wrapped JSON). Raises ``DecodeError`` naming the
        stream and entry id.
        """
        try:
            fields = self._fields(payload)
            return self._build(fields, payload, source=source, stream=stream, entry_id=entry_id)
        except DecodeError:
            raise
        except (ValueError, UnicodeDecodeError, TypeError) as exc:
            raise DecodeError(str(exc), stream=stream, entry_id=entry_id) from exc

    @staticmethod
    def _fields(payload: Mapping[str, Any] | bytes | str) -> dict[str, Any]:
        if isinstance(payload, Mapping):
            return _redis_fields(payload)
        return _body_fields(payload)

    def _build(
        self,
        raw_fields: dict[str, Any],
        payload: Mapping[str, Any] | bytes | str,
        *,
        source: str,
        stream: str,
        entry_id: str,
    ) -> Event:
        name = catalogue.parse_stream(stream, self._families)
        fields = normalise_fields(raw_fields)
        raw_op = _raw_operation(fields, name.service)
        op = catalogue.canonical_operation(raw_op, name.service)
        ids = _entity_ids(op, name.service, fields)
        return Event(
            source=source,
            stream=stream,
            entry_id=entry_id,
            operation=op,
            raw_operation=raw_op,
            occurred_at_ns=_occurred_at_ns(fields, entry_id),
            service=name.service,
            family=name.family,
            fields=fields,
            payload=payload,
            secrets=secret_values(fields),
            **ids,
        )


def _redis_fields(entry: Mapping[str, Any]) -> dict[str, Any]:
    data = entry.get("data")
    if data is not None and len(entry) == 1:
        return _json_object(data, "the 'data' field")
    return {_as_text(k): v for k, v in entry.items()}


def _body_fields(body: bytes | str) -> dict[str, Any]:
    buf = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    if buf.lstrip()[:1] == b"{":
        return _json_object(buf, "the message body")
    try:
        inner = unwrap_payload(buf)
    except WireError as exc:
        raise ValueError(f"the message body is neither JSON nor a protobuf-wrapped event ({exc})") from None
    return _json_object(inner, "the protobuf payload")


def _json_object(value: Any, what: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"{what} is not valid JSON ({exc.args[0]})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{what} is JSON but not an object")
    return parsed


def _as_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _raw_operation(fields: dict[str, Any], service: str) -> str:
    op = fields.get("operation")
    if isinstance(op, str) and op.strip():
        return op.strip()
    event_type = fields.get("event_type")
    if isinstance(event_type, str) and event_type.strip():
        return catalogue.mqtt_operation(event_type)
    raise ValueError("no 'operation' field")


def _occurred_at_ns(fields: dict[str, Any], entry_id: str) -> int:
    if "occurred_at" in fields:
        try:
            return to_int(fields["occurred_at"])
        except ValueError as exc:
            raise ValueError(f"field 'occurred_at': {exc}") from None
    if "timestamp" in fields:  # bootstrap before 2023: unix seconds
        try:
            return to_int(fields["timestamp"]) * NS_PER_S
        except ValueError as exc:
            raise ValueError(f"field 'timestamp': {exc}") from None
    millis, dash, _ = entry_id.partition("-")
    if dash and millis.isdigit():  # a Redis entry id starts with the server's milliseconds
        return int(millis) * _MS_PER_NS
    return time.time_ns()


def _str_or_none(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _entity_ids(op: str, service: str, f: dict[str, Any]) -> dict[str, str | None]:
    """The ids an event is about, by era and operation (facts §5: ids hide under other names)."""
    entity = op.partition(".")[0]
    thing = _str_or_none(f.get("thing_id") or f.get("client_id"))
    channel = _str_or_none(f.get("channel_id") or f.get("chan_id"))
    config = _str_or_none(f.get("config_id"))
    if service == "mqtt" and thing:
        # The MQTT adapter publishes the session password (the thing key) under thing_id.
        f["thing_key"] = f.pop("thing_id", None) or f.pop("client_id", None)
        thing = None
    if op == "channel.remove_handler":  # config_id holds the channel id
        channel, config = channel or config, None
    elif op == "cert.update":  # thing_key holds the thing id path parameter
        thing = thing or _str_or_none(f.get("thing_key"))
    elif op == "config.remove_handler":
        thing = thing or config
    if entity == "channel" and not channel:
        channel = _str_or_none(f.get("group_id") or f.get("id"))
    if entity == "thing" and not thing and service != "bootstrap":
        thing = _str_or_none(f.get("id"))
    if service == "bootstrap" and not config:
        config = thing  # a bootstrap config's id is its thing's id
    user = _str_or_none(f.get("user_id") or (f.get("id") if entity == "user" else None))
    return {
        "thing_id": thing,
        "channel_id": channel,
        "config_id": config,
        "external_id": _str_or_none(f.get("external_id")),
        "user_id": user,
        "domain_id": _str_or_none(f.get("domain") or f.get("domain_id")),
    }
