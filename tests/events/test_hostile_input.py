"""Hostile entries: the decoder raises DecodeError (naming stream, entry id and the reason) and
nothing else; what it accepts is bounded by [events]; the raw view keeps every byte."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from reactor.errors import DecodeError
from reactor.events.decode import DecodeLimits, Decoder
from reactor.events.model import raw_view
from reactor.settings import load_settings
from reactor.sources.base import Record

STREAM = "supermq.bootstrap"
#: A protobuf messaging.Message whose field 1 is truncated: binary, not UTF-8, not JSON.
PROTO_BLOB = bytes([0x0A, 0x03, 0xFF, 0xFE, 0x00, 0x2A, 0x05, 0x80])


def _decode(payload: object, limits: DecodeLimits | None = None) -> object:
    return Decoder(limits=limits).decode(payload, source="redis", stream=STREAM, entry_id="1-0")  # type: ignore[arg-type]


def _nested(depth: int) -> str:
    return '{"operation":"config.create","thing_id":"t","x":' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            {"operation": "config.create", "thing_id": b"t\xff"},
            "field 'thing_id' is not UTF-8 text (byte 0xff",
        ),
        ({b"thing\xfe": "t", "operation": "config.create"}, "a field name is not UTF-8 text (byte 0xfe"),
        ({"data": PROTO_BLOB}, "the 'data' field is neither JSON nor a protobuf-wrapped event"),
        ({"data": b'{"operation": "config.create", "x": "\xff"}'}, "the 'data' field is not UTF-8 text"),
        ({"data": _nested(10_000)}, "JSON nested deeper than events.max_depth (32)"),
        ({"data": _nested(500)}, "JSON nested deeper than events.max_depth (32)"),
        ({"data": _nested(40)}, "JSON nested deeper than events.max_depth (32)"),
        ({"operation": "config.create", "metadata": "[" * 10_000 + "]" * 10_000}, "nested deeper"),
        (b"\x0a\x05" + b"\xff" * 5, "the message body is neither JSON nor a protobuf-wrapped event"),
        (
            {"operation": "x" * 65_536},
            "an operation name of 65536 characters exceeds events.max_name_chars (256)",
        ),
        ({"operation": "config.create", "k" * 300: "v"}, "a field name of 300 characters exceeds"),
        (
            {"data": '{"operation": "config.create", "' + "k" * 300 + '": 1}'},
            "a field name of 300 characters",
        ),
        (
            {"operation": "config.create", "content": "x" * 1_048_577},
            "exceeds events.max_entry_bytes (1048576)",
        ),
        (b"{" + b" " * 1_048_576 + b"}", "entry of 1048578 bytes exceeds events.max_entry_bytes"),
    ],
)
def test_hostile_entries_are_decode_errors_naming_the_reason(payload: object, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        _decode(payload)
    assert caught.value.stream == STREAM
    assert caught.value.entry_id == "1-0"
    assert reason in caught.value.detail


def test_what_is_accepted_is_within_the_limits() -> None:
    assert _decode({"data": _nested(31)}) is not None  # the fields are level 1: 31 more fit in 32
    assert _decode({"operation": "config.create", "thing_id": "t", "content": "x" * 1000}) is not None
    tight = DecodeLimits(max_entry_bytes=100, max_depth=2, max_name_chars=9)
    with pytest.raises(DecodeError, match="max_entry_bytes"):
        _decode({"operation": "config.create", "content": "x" * 100}, tight)
    with pytest.raises(DecodeError, match="max_depth"):
        _decode({"data": _nested(2)}, tight)
    with pytest.raises(DecodeError, match="max_name_chars"):
        _decode({"operation": "config.create_x"}, tight)


def test_the_limits_are_settings_with_defaults() -> None:
    events = load_settings(None).events
    assert DecodeLimits.from_settings(events) == DecodeLimits()
    assert (events.max_entry_bytes, events.max_depth, events.max_name_chars) == (1_048_576, 32, 256)
    custom = load_settings(None, events={"max_entry_bytes": 10, "max_depth": 3, "max_name_chars": 5}).events
    assert DecodeLimits.from_settings(custom) == DecodeLimits(10, 3, 5)


def test_a_lone_surrogate_decodes_and_stays_a_value() -> None:
    event = _decode({"data": '{"operation": "config.create", "thing_id": "\\ud800"}'})
    assert event.thing_id == "\ud800"  # type: ignore[attr-defined]


def test_the_raw_view_keeps_bytes_that_are_not_text_as_base64_and_replay_restores_them() -> None:
    payload: dict[Any, Any] = {
        "operation": "config.create",
        "thing_id": b"t\xff",
        b"k\xfe": b"v",
        "data_ok": b"fine",
    }
    view = raw_view(payload)
    assert view["operation"] == "config.create"
    assert view["data_ok"] == "fine"
    assert base64.b64decode(view["_b64"]["thing_id"]) == b"t\xff"
    assert base64.b64decode(view["_b64"]["k\\xfe"]) == b"v"
    json.dumps(view)  # serialisable as it is
    record = Record("9-0", {"stream": STREAM, "entry_id": "1-0", "event": json.dumps(view), "attempts": "1"})
    restored = record.delivery().payload
    assert isinstance(restored, dict)
    assert restored["thing_id"] == b"t\xff"
    assert restored["operation"] == "config.create"
    assert raw_view(PROTO_BLOB) == {"body_b64": base64.b64encode(PROTO_BLOB).decode()}


def test_a_replayed_poison_record_is_a_redelivery_not_poison_again() -> None:
    """A poison record's attempts (11) or an action's (up to 100) are not deliveries of the replay:
    were they counted, the replay would be dead-lettered as poison again, every time."""
    for reason, attempts in (("poison", "11"), ("action_failed", "40")):
        event = json.dumps({"operation": "config.create", "thing_id": "t"})
        fields = {"stream": STREAM, "entry_id": "1-0", "reason": reason, "attempts": attempts, "event": event}
        assert Record("9-0", fields).delivery().deliveries == 2
