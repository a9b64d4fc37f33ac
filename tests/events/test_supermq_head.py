"""SuperMQ as it is today (absmach/supermq 791e084, 2026-04): every event shape HEAD publishes on
Redis decodes to the canonical event the rules speak.

The fixture (tests/events/fixtures/supermq-head-791e084.jsonl) is written from the code:
- pkg/events/redis/publisher.go: key ``events.`` + stream, one field ``data`` holding the JSON of
  ``Encode()`` plus ``occurred_at`` (int64 nanoseconds);
- clients/events/streams.go, channels/events/streams.go: one stream per operation,
  ``supermq.client.<op>`` / ``supermq.channel.<op>``; the events carry ``id``, ``domain``,
  ``user_id``, ``token_type``, ``super_admin``, ``request_id``; connect carries ``client_ids``,
  ``channel_ids``, ``types`` (ConnType marshals as its String(): ``"Publish"``/``"Subscribe"``);
- bootstrap/events/producer/streams.go, events.go: ``magistrala.bootstrap.<entity>.<op>``, except
  View and Update, which publish to the bare operation name (``bootstrap.config.view``, no
  ``magistrala.``) and UpdateChannelHandler, which publishes on the config *update* stream;
  config events carry ``client_id``, ``channels`` as a JSON array, ``state`` as State.String()
  (bootstrap/state.go: ``strconv.Itoa``, so ``"0"``/``"1"``, not a word) and the domain under the
  key ``"domain_id "`` (trailing space).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reactor.events.catalogue import CANONICAL_OPERATIONS
from reactor.events.decode import Decoder
from reactor.events.model import Event
from reactor.events.protowire import wrap_payload
from reactor.redact import redact
from reactor.secrets import Secret

FIXTURE = Path(__file__).parent / "fixtures" / "supermq-head-791e084.jsonl"
DOMAIN = "4d3c2b1a-0000-4000-8000-00000000d001"
CLIENT = "c1e2a3b4-0000-4000-8000-0000000c0001"
CH1, CH2 = "aa000000-0000-4000-8000-0000000000c1", "aa000000-0000-4000-8000-0000000000c2"


def _entries() -> list[dict[str, Any]]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def _decode(entry: dict[str, Any]) -> Event:
    # as the Redis source hands them over: UTF-8 names and values as text
    return Decoder().decode(
        dict(entry["fields"]), source="redis", stream=entry["stream"], entry_id=entry["id"]
    )


EVENTS = [_decode(e) for e in _entries()]


def _one(raw_operation: str, **fields: Any) -> Event:
    found = [
        e
        for e in EVENTS
        if e.raw_operation == raw_operation and all(e.get(k) == v for k, v in fields.items())
    ]
    assert len(found) == 1, (raw_operation, fields, len(found))
    return found[0]


def test_every_operation_maps_onto_a_canonical_one() -> None:
    unknown = {e.raw_operation: e.operation for e in EVENTS if e.operation not in CANONICAL_OPERATIONS}
    assert unknown == {}


@pytest.mark.parametrize(
    ("raw", "canonical", "stream"),
    [
        ("client.create", "thing.create", "events.supermq.client.create"),
        ("client.update_secret", "thing.update_secret", "events.supermq.client.update_secret"),
        ("client.disable", "thing.disable", "events.supermq.client.disable"),
        ("client.enable", "thing.enable", "events.supermq.client.enable"),
        ("client.remove", "thing.remove", "events.supermq.client.remove"),
        ("channel.connect", "channel.connect", "events.supermq.channel.connect"),
        ("channel.remove", "channel.remove", "events.supermq.channel.remove"),
        ("bootstrap.config.create", "config.create", "events.magistrala.bootstrap.config.create"),
        ("bootstrap.config.view", "config.view", "events.bootstrap.config.view"),
        (
            "bootstrap.client.change_state",
            "thing.change_state",
            "events.magistrala.bootstrap.client.change_state",
        ),
        ("bootstrap.client.connect", "thing.connect", "events.magistrala.bootstrap.client.connect"),
        ("bootstrap.client.disconnect", "thing.disconnect", "events.magistrala.bootstrap.client.disconnect"),
        ("bootstrap.cert.update", "cert.update", "events.magistrala.bootstrap.cert.update"),
        (
            "bootstrap.channel.update_handler",
            "channel.update_handler",
            "events.magistrala.bootstrap.config.update",
        ),
        (
            "bootstrap.channel.remove_handler",
            "channel.remove_handler",
            "events.magistrala.bootstrap.channel.remove_handler",
        ),
        (
            "bootstrap.config.remove_handler",
            "config.remove_handler",
            "events.magistrala.bootstrap.config.remove_handler",
        ),
    ],
)
def test_operation_names_and_streams(raw: str, canonical: str, stream: str) -> None:
    event = next(e for e in EVENTS if e.raw_operation == raw)
    assert (event.operation, event.stream) == (canonical, stream)


def test_streams_split_into_family_and_service() -> None:
    by_stream = {e.stream: (e.family, e.service) for e in EVENTS}
    assert by_stream["events.supermq.client.create"] == ("supermq", "client")
    assert by_stream["events.magistrala.bootstrap.config.create"] == ("magistrala", "bootstrap")
    assert by_stream["events.bootstrap.config.view"] == ("", "bootstrap")


def test_client_events_name_the_client_and_the_domain() -> None:
    for raw in ("client.create", "client.update_secret", "client.disable", "client.enable", "client.remove"):
        event = _one(raw)
        assert (event.thing_id, event.domain_id, event.device) == (CLIENT, DOMAIN, CLIENT)
    assert _one("client.create").metadata == {"external_id": "ext-1"}
    assert _one("client.create")["super_admin"] is False


def test_config_events_read_client_id_channels_state_and_the_spaced_domain_key() -> None:
    created = _one("bootstrap.config.create")
    assert (created.thing_id, created.config_id, created.external_id) == (CLIENT, CLIENT, "ext-1")
    assert created.domain_id == DOMAIN
    assert created["domain_id"] == DOMAIN  # rules read event.domain_id, not event["domain_id "]
    assert "domain_id " not in created.fields
    assert created["channels"] == [CH1, CH2]
    assert created["state"] == 0
    assert created.content == {"mode": "eco"}
    assert _one("bootstrap.client.change_state")["state"] == 1


def test_connection_events_carry_lists_of_ids_and_types() -> None:
    connect = _one("channel.connect")
    assert connect["client_ids"] == [CLIENT]
    assert connect["channel_ids"] == [CH1, CH2]
    assert connect["types"] == ["Publish", "Subscribe"]
    assert _one("bootstrap.client.update_connections")["channels"] == [CH1]
    handler_connect = _one("bootstrap.client.connect")
    assert (handler_connect.thing_id, handler_connect.channel_id) == (CLIENT, CH1)


def test_handler_events_name_what_they_are_about() -> None:
    assert _one("bootstrap.channel.remove_handler").channel_id == CH2
    assert _one("bootstrap.channel.remove_handler").config_id is None
    assert _one("bootstrap.config.remove_handler").thing_id == CLIENT
    assert _one("bootstrap.channel.update_handler").channel_id == CH1
    assert _one("bootstrap.cert.update").thing_id == CLIENT
    assert _one("bootstrap.config.remove").thing_id == CLIENT


def test_bootstrap_attempts_keep_their_outcome() -> None:
    assert _one("bootstrap.client.bootstrap", external_id="ext-1").success is True
    failed = _one("bootstrap.client.bootstrap", external_id="ext-unknown")
    assert (failed.success, failed.thing_id, failed.external_id) == (False, None, "ext-unknown")


def test_occurred_at_is_the_published_nanoseconds() -> None:
    for entry, event in zip(_entries(), EVENTS, strict=True):
        assert event.occurred_at_ns == json.loads(entry["fields"]["data"])["occurred_at"]


def test_keys_and_certificates_are_known_secrets() -> None:
    for raw in ("bootstrap.config.create", "bootstrap.cert.update"):
        event = _one(raw)
        key = event["client_key"]
        assert isinstance(key, Secret)  # a secret from decoding on (issue 19)
        assert key.reveal() in event.secrets
        assert key.reveal() not in json.dumps(redact(dict(event.fields)))


@pytest.mark.parametrize(("word", "value"), [("Active", 1), ("inactive", 0), ("1", 1), ("0", 0)])
def test_state_as_a_word_or_a_digit(word: str, value: int) -> None:
    data = json.dumps({"operation": "bootstrap.client.change_state", "client_id": CLIENT, "state": word})
    event = Decoder().decode(
        {"data": data}, source="t", stream="events.magistrala.bootstrap.client.change_state", entry_id="1-0"
    )
    assert event["state"] == value


def test_the_same_events_as_head_publishes_them_on_nats_decode_alike() -> None:
    """pkg/events/nats/publisher.go at HEAD: subject ``events.`` + the stream (pkg/messaging/nats
    publisher.go, ``.`` kept), the body a protobuf ``messaging.Message`` whose ``payload`` (field 6)
    is the JSON the Redis publisher puts in ``data``. The NATS source's stream is the subject."""
    for entry, redis_event in zip(_entries(), EVENTS, strict=True):
        body = wrap_payload(entry["fields"]["data"].encode("utf-8"), 6)
        event = Decoder().decode(body, source="nats", stream=entry["stream"], entry_id="17")
        assert (event.operation, event.thing_id, event.channel_id, event.domain_id) == (
            redis_event.operation,
            redis_event.thing_id,
            redis_event.channel_id,
            redis_event.domain_id,
        )
        assert (event.family, event.service) == (redis_event.family, redis_event.service)
