"""Decoders: every encoding SuperMQ has used → one ``Event``.

Encodings (absmach/supermq ``pkg/events/{redis,nats,rabbitmq}/publisher.go`` across its tags):
- Redis flat fields: every event key a stream field, values strings (eras A/B);
- Redis single ``data`` field holding the JSON of all fields (Magistrala v0.15+);
- bare JSON bytes (as the docs show NATS and RabbitMQ);
- JSON inside protobuf ``messaging.Message`` field 5 or 6 (what NATS/RabbitMQ really carry).

What is accepted is bounded (``DecodeLimits``, from ``[events]``): the entry's size, the nesting
of its JSON, the length of its operation and field names. Anything outside them, a field that is
not UTF-8 text, or JSON nested past Python's own limits is a ``DecodeError``; ``decode`` raises
nothing else.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reactor.errors import DecodeError
from reactor.events import catalogue
from reactor.events.model import NS_PER_S, Event
from reactor.events.normalise import normalise_fields, to_int
from reactor.events.protowire import WireError, unwrap_payload
from reactor.redact import MIN_SHORT_LEN, is_secret_key, secret_values
from reactor.secrets import Secret, wrap_named
from reactor.settings import DEFAULT_FAMILIES

if TYPE_CHECKING:
    from reactor.settings import EventsSettings

_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """What one entry may hold (``[events]`` in the settings; these defaults are its defaults)."""

    max_entry_bytes: int = 1_048_576
    max_depth: int = 32
    max_name_chars: int = 256

    @classmethod
    def from_settings(cls, events: EventsSettings) -> DecodeLimits:
        return cls(events.max_entry_bytes, events.max_depth, events.max_name_chars)


class Decoder:
    """Turns raw payloads into Events; holds the configured stream families and limits."""

    __slots__ = ("_families", "_limits")

    def __init__(
        self, families: Iterable[str] = DEFAULT_FAMILIES, limits: DecodeLimits | None = None
    ) -> None:
        self._families = tuple(families)
        self._limits = limits or DecodeLimits()

    @classmethod
    def from_settings(cls, events: EventsSettings) -> Decoder:
        """The decoder ``[events]`` configures: its stream families and its bounds."""
        return cls(events.families, DecodeLimits.from_settings(events))

    def decode(
        self, payload: Mapping[str, Any] | bytes | str, *, source: str, stream: str, entry_id: str
    ) -> Event:
        """Decode one payload as received from ``stream`` at ``entry_id``.

        A Mapping is a Redis entry (flat fields, or one ``data`` field); bytes or str are a
        message body (bare JSON or protobuf-wrapped JSON). Raises ``DecodeError`` naming the
        stream and entry id, and nothing else.
        """
        try:
            _check_size(payload, self._limits.max_entry_bytes)
            fields = self._fields(payload)
            return self._build(fields, payload, source=source, stream=stream, entry_id=entry_id)
        except DecodeError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:  # UnicodeDecodeError is a ValueError
            raise DecodeError(str(exc), stream=stream, entry_id=entry_id) from exc
        except RecursionError as exc:  # JSON nested past what Python parses (far beyond max_depth)
            detail = f"JSON nested deeper than events.max_depth ({self._limits.max_depth})"
            raise DecodeError(detail, stream=stream, entry_id=entry_id) from exc

    def raw_secrets(self, payload: Mapping[str, Any] | bytes | str, stream: str) -> frozenset[str]:
        """The secret values of an entry that did not decode (masked by value in its dead-letter
        record): its secret-named fields, those of its ``data`` or body JSON where it parses, and
        the MQTT adapter's thing key (``thing_id`` on the mqtt stream). Never raises."""
        try:
            fields = dict(payload) if isinstance(payload, Mapping) else {}
            body: Any = fields.get("data") if len(fields) == 1 else None if fields else payload
            parsed = None
            if body is not None:
                try:
                    parsed = json.loads(body)
                except (ValueError, TypeError, RecursionError):
                    parsed = None
                if isinstance(parsed, dict):
                    fields |= parsed
            text = {_lenient(k): _lenient(v) if isinstance(v, bytes) else v for k, v in fields.items()}
            found = set(secret_values(text))
            if catalogue.parse_stream(stream, self._families).service == "mqtt":
                found |= {str(text[k]) for k in ("thing_id", "client_id") if text.get(k)}
                if isinstance(body, str | bytes) and not isinstance(parsed, dict):  # JSON that is not
                    found |= set(_MQTT_KEY.findall(_lenient(body)))  # whole: the key read from its text
            return frozenset(v for v in found if len(v) >= MIN_SHORT_LEN)
        except Exception:  # a record must still be written: the other nets remain
            return frozenset()

    def _fields(self, payload: Mapping[str, Any] | bytes | str) -> dict[str, Any]:
        if type(payload) is dict or isinstance(payload, Mapping):  # a dict: no ABC check
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
        _check_shape(fields, self._limits)
        raw_op = _raw_operation(fields, name.service)
        _check_name("an operation name", raw_op, self._limits.max_name_chars)
        op = catalogue.canonical_operation(raw_op, name.service)
        op = catalogue.refine_operation(op, fields.get("status"))
        ids = _entity_ids(op, name.service, fields)
        if max(map(len, filter(None, ids.values())), default=0) > self._limits.max_name_chars:
            for key, value in ids.items():  # ids key lanes and caches: bounded like names
                _check_name(f"the {key}", value or "", self._limits.max_name_chars)
        fields, secrets = _secrets_typed(fields)
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
            secrets=secrets,
            **ids,
        )


#: The MQTT adapter's thing key in the text of a body that does not parse.
_MQTT_KEY = re.compile(r'"(?:thing_id|client_id)"\s*:\s*"((?:[^"\\]|\\.)*)')


def _lenient(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _secrets_typed(fields: dict[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
    """The fields with every secret-named value a ``Secret`` (nested ones too: a config's
    content), and the values of the top-level ones (for masking by value). One pass; the fields
    are copied only when something in them changes."""
    out: dict[str, Any] | None = None
    found: list[str] = []
    for key, value in fields.items():
        kind = type(value)
        if kind is str or kind is int:
            if not value or not is_secret_key(key):
                continue
            text = value if kind is str else str(value)
            found.append(text)
            new: Any = Secret(text)
        elif kind is dict or (kind is list and any(type(v) is dict for v in value)):
            new = wrap_named(value, is_secret_key)
        else:
            continue
        if out is None:
            out = dict(fields)
        out[key] = new
    return (fields if out is None else out), frozenset(v for v in found if len(v) >= MIN_SHORT_LEN)


def _check_size(payload: Mapping[str, Any] | bytes | str, limit: int) -> None:
    """``ValueError`` when the entry is larger than ``limit`` (str counts characters, near enough)."""
    if type(payload) is dict or isinstance(payload, Mapping):  # a dict (Redis): no ABC check
        try:
            size = sum(map(len, payload)) + sum(map(len, payload.values()))
        except TypeError:  # values that are not text (a replayed JSON line): count what is
            size = sum(_size(k) + _size(v) for k, v in payload.items())
    else:
        size = len(payload)
    if size > limit:
        raise ValueError(f"entry of {size} bytes exceeds events.max_entry_bytes ({limit})")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | bytearray) else 0


_CONTAINERS = frozenset({dict, list})
_BYTES = (bytes, bytearray)


def _check_shape(fields: dict[str, Any], limits: DecodeLimits) -> None:
    """``ValueError`` for a field name longer than ``max_name_chars`` or JSON deeper than ``max_depth``."""
    if fields and max(map(len, fields)) > limits.max_name_chars:
        _check_names("a field name", fields, limits.max_name_chars)
    level = [v for v in fields.values() if type(v) is dict or type(v) is list]  # the fields are level 1
    depth = 2
    while level:  # one level at a time, no recursion (a list of lists a million deep is fine)
        if depth > limits.max_depth:
            raise ValueError(f"JSON nested deeper than events.max_depth ({limits.max_depth})")
        below: list[Any] = []
        for value in level:
            below += [c for c in (value.values() if type(value) is dict else value) if type(c) in _CONTAINERS]
        level, depth = below, depth + 1


def _check_names(what: str, names: Iterable[str], max_chars: int) -> None:
    for name in names:
        _check_name(what, name, max_chars)


def _redis_fields(entry: Mapping[str, Any]) -> dict[str, Any]:
    data = entry.get("data")
    if data is not None and len(entry) == 1:
        if isinstance(data, bytes | bytearray):  # not UTF-8 (the source keeps such values as bytes)
            return _body_fields(bytes(data), "the 'data' field")
        return _json_object(data, "the 'data' field")
    out: dict[str, Any] = {}
    for key, value in entry.items():
        name = key if type(key) is str else _field_name(key)
        out[name] = _field_text(name, value) if isinstance(value, _BYTES) else value
    return out


def _field_name(key: Any) -> str:
    try:
        return _as_text(key)
    except UnicodeDecodeError as exc:
        raise ValueError(f"a field name is not UTF-8 text ({_bad_byte(exc)})") from None


def _check_name(what: str, name: str, max_chars: int) -> None:
    if len(name) > max_chars:
        raise ValueError(f"{what} of {len(name)} characters exceeds events.max_name_chars ({max_chars})")


def _field_text(name: str, value: bytes | bytearray) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"field {name!r} is not UTF-8 text ({_bad_byte(exc)})") from None


def _bad_byte(exc: UnicodeDecodeError) -> str:
    return f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"


def _body_fields(body: bytes | str, what: str = "the message body") -> dict[str, Any]:
    buf = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    if buf.lstrip()[:1] == b"{":
        return _json_object(buf, what)
    try:
        inner = unwrap_payload(buf)
    except WireError as exc:
        raise ValueError(f"{what} is neither JSON nor a protobuf-wrapped event ({exc})") from None
    return _json_object(inner, f"the protobuf payload of {what}")


def _json_object(value: Any, what: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not UTF-8 text ({_bad_byte(exc)})") from None
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
        return int(millis) * _NS_PER_MS
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
    if entity == "policy" and service == "things":  # Mainflux: subject = the thing, object = the channel
        thing = thing or _str_or_none(f.get("subject"))
        channel = channel or _str_or_none(f.get("object"))
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
        "domain_id": _str_or_none(f.get("domain") or f.get("domain_id") or _spaced_domain(f)),
    }


def _spaced_domain(f: dict[str, Any]) -> Any:
    """SuperMQ HEAD's bootstrap events key the domain ``"domain_id "`` (a trailing space,
    bootstrap/events/producer/events.go): moved to ``domain_id``, where rules look for it."""
    if "domain_id " not in f:
        return None
    f.setdefault("domain_id", f.pop("domain_id "))
    return f["domain_id"]
