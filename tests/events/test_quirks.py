"""Each era quirk of SuperMQ events, pinned (supermq-facts.md §1 and §5)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reactor.errors import DecodeError
from reactor.events.catalogue import canonical_operation, parse_stream
from reactor.events.decode import Decoder
from reactor.events.model import Event
from reactor.events.normalise import to_bool, to_list, to_object
from reactor.events.protowire import WireError, unwrap_payload, wrap_payload


def decode(payload: Any, stream: str = "supermq.bootstrap", entry_id: str = "1693339161600-0") -> Event:
    return Decoder().decode(payload, source="test", stream=stream, entry_id=entry_id)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("{}", {}),
        ("e30=", {}),  # NATS: Go []byte marshalled as base64
        ("eyJyb2xlIjoiYWRtaW4ifQ==", {"role": "admin"}),
        ({"native": True}, {"native": True}),  # Magistrala v0.15+: a JSON object
        ("", {}),
        ('"e30="', {}),  # a JSON string holding base64
    ],
)
def test_metadata_forms(value: Any, expected: dict[str, Any]) -> None:
    assert to_object(value) == expected
    assert decode({"operation": "thing.create", "metadata": value}).metadata == expected


@pytest.mark.parametrize("bad", ["not json", "[1,2]", "bm90IGpzb24="])
def test_metadata_that_is_not_an_object_is_a_decode_error_naming_the_field(bad: str) -> None:
    with pytest.raises(DecodeError, match="'metadata'") as info:
        decode({"operation": "thing.create", "metadata": bad}, entry_id="42-0")
    assert info.value.entry_id == "42-0"
    assert "42-0" in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[a,b]", ["a", "b"]),  # Mainflux 2023: fmt.Sprintf("[%s]", strings.Join(...))
        ("[8d77099e-4911-4140-8555-7d3be65a1694]", ["8d77099e-4911-4140-8555-7d3be65a1694"]),
        ("[a, b]", ["a", "b"]),
        ('["a","b"]', ["a", "b"]),  # v0.14.0: a JSON string
        ("a, b, c", ["a", "b", "c"]),  # 2019 update_connections
        (["a", "b"], ["a", "b"]),  # v0.15+: a JSON array
        ("[]", []),
        ("", []),
    ],
)
def test_list_forms(value: Any, expected: list[str]) -> None:
    assert to_list(value) == expected
    assert decode({"operation": "thing.update_connections", "channels": value}).get("channels") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("0", False),
        (True, True),
        (False, False),
        ("true", True),
        ("false", False),
        (1, True),
        (0, False),
    ],
)
def test_boolean_forms(value: Any, expected: bool) -> None:
    assert to_bool(value) is expected
    assert decode({"operation": "thing.bootstrap", "success": value}).success is expected


def test_a_boolean_field_with_garbage_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match=r"'success'.*not a boolean"):
        decode({"operation": "thing.bootstrap", "success": "maybe"})
    with pytest.raises(ValueError, match="not a boolean"):
        to_bool(2)


@pytest.mark.parametrize("value", ["1693307171925834295", 1693307171925834295])
def test_occurred_at_string_or_number_is_an_exact_int(value: Any) -> None:
    event = decode({"operation": "user.create", "occurred_at": value}, stream="supermq.users")
    assert event.occurred_at_ns == 1693307171925834295  # above 2**53: must not pass through a float
    assert event.occurred_at.isoformat() == "2023-08-29T11:06:11.925834+00:00"


def test_occurred_at_falls_back_to_timestamp_seconds_then_entry_id() -> None:
    assert (
        decode({"operation": "thing.state_change", "timestamp": "1555405294"}).occurred_at_ns
        == 1555405294 * 10**9
    )
    assert (
        decode({"operation": "config.list"}, entry_id="1693339274766-0").occurred_at_ns
        == 1693339274766 * 10**6
    )


def test_bad_occurred_at_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="occurred_at"):
        decode({"operation": "config.list", "occurred_at": "yesterday"})


def test_state_is_an_int() -> None:
    assert decode({"operation": "thing.change_state", "state": "1", "thing_id": "t"}).get("state") == 1


@pytest.mark.parametrize(
    ("raw", "service", "canonical"),
    [
        ("thing.state_change", "bootstrap", "thing.change_state"),
        ("thing.change_state", "bootstrap", "thing.change_state"),
        ("bootstrap.thing.change_state", "bootstrap", "thing.change_state"),
        ("bootstrap.client.change_state", "bootstrap", "thing.change_state"),
        ("bootstrap.config.create", "bootstrap", "config.create"),
        ("bootstrap.channel.remove_handler", "bootstrap", "channel.remove_handler"),
        ("group.remove_handler", "bootstrap", "channel.remove_handler"),
        ("group.update_handler", "bootstrap", "channel.update_handler"),
        ("policies.add", "things", "policy.add"),
        ("policies.delete", "users", "policy.remove"),
        ("policy.remove", "things", "policy.remove"),
        ("group.create", "things", "channel.create"),  # channels are groups in the things era
        ("group.assign", "things", "channel.assign"),
        ("channels.remove", "clients", "channel.remove"),
        ("group.create", "users", "group.create"),  # ...but a users-stream group is a user group
        ("client.create", "client", "thing.create"),  # SuperMQ v0.16+: things became clients
        ("connect", "mqtt", "mqtt.connect"),
    ],
)
def test_operation_aliases(raw: str, service: str, canonical: str) -> None:
    assert canonical_operation(raw, service) == canonical


def test_the_original_operation_is_kept() -> None:
    event = decode(
        {"data": json.dumps({"operation": "bootstrap.thing.change_state", "thing_id": "t"})},
        stream="events.magistrala.bootstrap",
    )
    assert (event.operation, event.raw_operation) == ("thing.change_state", "bootstrap.thing.change_state")


@pytest.mark.parametrize(
    ("stream", "family", "service"),
    [
        ("supermq.bootstrap", "supermq", "bootstrap"),
        ("events.supermq.things", "supermq", "things"),
        ("magistrala.things", "magistrala", "things"),
        ("events.magistrala.bootstrap", "magistrala", "bootstrap"),
        ("mainflux.mqtt", "mainflux", "mqtt"),
        ("events.supermq.client.create", "supermq", "client"),  # HEAD: one stream per action
        ("acme.bootstrap", "", "acme"),
    ],
)
def test_stream_families(stream: str, family: str, service: str) -> None:
    name = parse_stream(stream)
    assert (name.family, name.service) == (family, service)


def test_stream_families_are_configurable() -> None:
    event = Decoder(["acme"]).decode(
        {"operation": "config.create", "thing_id": "t"},
        source="t",
        stream="events.acme.bootstrap",
        entry_id="1-0",
    )
    assert (event.family, event.service, event.config_id) == ("acme", "bootstrap", "t")


def test_ids_hidden_under_other_names() -> None:
    removed = decode({"operation": "group.remove_handler", "config_id": "chan-1"})
    assert (removed.channel_id, removed.config_id, removed.device) == ("chan-1", None, None)
    cert = decode({"operation": "cert.update", "thing_key": "thing-9"})
    assert cert.thing_id == "thing-9"
    thing = decode({"operation": "thing.remove", "id": "thing-3"}, stream="supermq.things")
    assert thing.thing_id == thing.device == "thing-3"
    client = decode({"operation": "client.remove", "id": "c-1"}, stream="supermq.client.remove")
    assert (client.operation, client.thing_id) == ("thing.remove", "c-1")
    by_external = decode({"operation": "thing.bootstrap", "external_id": "FF-41", "success": "0"})
    assert by_external.device == "FF-41"


def test_mqtt_thing_id_is_the_thing_key_so_it_is_kept_as_a_secret() -> None:
    event = decode({"thing_id": "key-123", "event_type": "connect", "instance": ""}, stream="supermq.mqtt")
    assert event.operation == "mqtt.connect"
    assert event.thing_id is None
    assert event.get("thing_key") == "key-123"


@pytest.mark.parametrize("field_number", [5, 6])
def test_protobuf_wrapper(field_number: int) -> None:
    body = b'{"operation":"config.remove","thing_id":"t1","occurred_at":1697041490458439515}'
    wrapped = wrap_payload(body, field_number)
    assert unwrap_payload(wrapped) == body
    event = decode(wrapped)
    assert (event.operation, event.thing_id, event.occurred_at_ns) == (
        "config.remove",
        "t1",
        1697041490458439515,
    )


def test_protobuf_with_other_fields_set() -> None:
    body = b'{"operation":"config.remove","thing_id":"t1"}'
    # channel (1) = "c", created (7, varint) = 150, payload (6)
    message = b"\x0a\x01c" + b"\x38\x96\x01" + wrap_payload(body, 6)
    assert decode(message).thing_id == "t1"


@pytest.mark.parametrize("garbage", [b"\x0a\xff", b"\x32\x05{}", b"\xff\xff\xff", b"\x00", b"plain text"])
def test_garbage_bodies_are_decode_errors(garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(garbage)


def test_unwrap_without_payload() -> None:
    with pytest.raises(WireError):
        unwrap_payload(b"\x0a\x01c")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"data": "{not json"}, "'data' field is not valid JSON"),
        ({"data": "[1]"}, "not an object"),
        ({"name": "x"}, "no 'operation' field"),
        (b"[1,2]", "neither JSON nor a protobuf"),
        (b"{", "not valid JSON"),
    ],
)
def test_malformed_events_say_why(payload: Any, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(payload)


def test_event_is_frozen() -> None:
    event = decode({"operation": "config.remove", "thing_id": "t"})
    with pytest.raises(AttributeError):
        event.operation = "x"  # type: ignore[misc]
