"""The one typed, normalised event every source produces and every rule sees."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Event:
    """A SuperMQ event, whatever its backend and era.

    ``operation`` is the canonical name (``thing.change_state``); ``raw_operation`` is the name
    as published (``bootstrap.thing.change_state``). ``fields`` holds the decoded payload with
    the era quirks absorbed (metadata as a dict, lists as lists, booleans as bools). ``payload``
    is what was received; ``raw`` its JSON-serialisable view for the dead-letter stream and
    replay, made only when asked for (most events never need it).
    """

    source: str
    stream: str
    entry_id: str
    operation: str
    raw_operation: str
    occurred_at_ns: int
    service: str = ""
    family: str = ""
    thing_id: str | None = None
    channel_id: str | None = None
    config_id: str | None = None
    external_id: str | None = None
    user_id: str | None = None
    domain_id: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    payload: Mapping[str, Any] | bytes | str = field(default_factory=dict)
    #: Values of the event's secret-named fields (keys, thing keys, tokens): masked in any output.
    secrets: frozenset[str] = frozenset()

    @property
    def occurred_at(self) -> datetime:
        """``occurred_at_ns`` as an aware UTC datetime (microsecond precision)."""
        seconds, nanos = divmod(self.occurred_at_ns, NS_PER_S)
        return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=nanos // 1000)

    @property
    def raw(self) -> dict[str, Any]:
        """The payload as received, JSON-serialisable (see ``raw_view``)."""
        return raw_view(self.payload)

    @property
    def device(self) -> str | None:
        """The key that orders events about one device: thing id, else config id, else external id."""
        return self.thing_id or self.config_id or self.external_id

    @property
    def success(self) -> bool:
        """The event's ``success`` field where it has one (``thing.bootstrap``), else True."""
        return bool(self.fields.get("success", True))

    @property
    def content(self) -> Any:
        """The decoded bootstrap ``content`` (a dict when it was JSON), or None."""
        return self.fields.get("content")

    @property
    def metadata(self) -> Any:
        """The decoded ``metadata`` (a dict), or None."""
        return self.fields.get("metadata")

    def __getitem__(self, name: str) -> Any:
        """``event["state"]``, and in rule expressions ``event.state``: a decoded field."""
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        """A decoded field by name."""
        return self.fields.get(name, default)

    def summary(self) -> dict[str, Any]:
        """The identifying part of the event, for logs and reports (no payload)."""
        out: dict[str, Any] = {
            "stream": self.stream,
            "entry_id": self.entry_id,
            "operation": self.operation,
        }
        if self.raw_operation != self.operation:
            out["raw_operation"] = self.raw_operation
        if self.device:
            out["device"] = self.device
        return out


#: Where ``raw_view`` keeps the fields that are not UTF-8 text: their bytes, base64.
RAW_B64 = "_b64"


def raw_view(payload: Mapping[str, Any] | bytes | str) -> dict[str, Any]:
    """The payload as received, in a JSON-serialisable form for the dead-letter stream.

    Never raises: fields that are not UTF-8 text are kept as base64 under ``_b64`` (their names
    with undecodable bytes escaped), a body that is not UTF-8 JSON as ``body_b64``.
    """
    if isinstance(payload, Mapping):
        return _fields_view(payload)
    if isinstance(payload, bytes):
        if payload.lstrip()[:1] == b"{":
            try:
                return {"body": payload.decode("utf-8")}
            except UnicodeDecodeError:
                pass
        return {"body_b64": base64.b64encode(payload).decode("ascii")}
    return {"body": payload}


def _fields_view(payload: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    binary: dict[str, str] = {}
    for key, value in payload.items():
        name, name_ok = _text(key)
        if isinstance(value, bytes | bytearray):
            text, ok = _text(value)
            if ok and name_ok:
                out[name] = text
            else:
                binary[name] = base64.b64encode(value).decode("ascii")
        elif name_ok:
            out[name] = value
        else:
            binary[name] = base64.b64encode(str(value).encode("utf-8", "backslashreplace")).decode("ascii")
    if binary:
        out[RAW_B64] = binary
    return out


def _text(value: Any) -> tuple[str, bool]:
    """``value`` as text, and whether it was UTF-8 (else undecodable bytes are escaped)."""
    if not isinstance(value, bytes | bytearray):
        return str(value), True
    try:
        return bytes(value).decode("utf-8"), True
    except UnicodeDecodeError:
        return bytes(value).decode("utf-8", "backslashreplace"), False
