"""Every event the real Mainflux published in the captured scenario (tests/conformance/capture.py,
fixture in tests/events/fixtures/) decodes, and means what the platform meant by it."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from reactor.events.decode import Decoder
from reactor.events.echoes import is_read
from reactor.events.model import Event

FIXTURE = Path(__file__).parent / "fixtures" / "mainflux-59bcb72f52c0.jsonl"


def _entries() -> list[dict[str, Any]]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def _raw(value: Any) -> bytes:
    return base64.b64decode(value["b64"]) if isinstance(value, dict) else value.encode("utf-8")


def _decode(entry: dict[str, Any]) -> Event:
    fields = {k.encode(): _raw(v) for k, v in entry["fields"].items()}  # as a bytes-reading client gets them
    return Decoder().decode(fields, source="redis", stream=entry["stream"], entry_id=entry["id"])


EVENTS = [_decode(e) for e in _entries()]


def _of(raw_operation: str, **fields: Any) -> list[Event]:
    return [
        e
        for e in EVENTS
        if e.raw_operation == raw_operation and all(e.get(k) == v for k, v in fields.items())
    ]


def test_the_fixture_covers_what_the_rules_meet() -> None:
    seen = {e.raw_operation for e in EVENTS}
    assert {
        "config.create",
        "config.list",
        "config.update",
        "config.remove",
        "config.remove_handler",
        "thing.update_connections",
        "cert.update",
        "thing.change_state",
        "thing.bootstrap",
        "channel.remove_handler",
        "thing.remove",
        "channel.remove",
        "policies.add",
        "policies.delete",
    } <= seen


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"{e.stream}:{e.raw_operation}")
def test_every_captured_event_decodes(event: Event) -> None:
    assert event.operation
    assert event.occurred_at_ns > 1_600_000_000 * 10**9


def test_config_create_carries_channels_and_its_key_as_a_secret() -> None:
    [created, *_] = _of("config.create")
    assert (created.thing_id, created.config_id, created.external_id) == (
        created.get("thing_id"),
        created.get("thing_id"),
        "cap-ext",
    )
    assert isinstance(created.get("channels"), list)
    assert len(created.get("channels")) == 2
    assert created.get("state") == 0
    assert created.get("client_key", "").startswith("-----BEGIN")
    assert created.get("client_key") in created.secrets


def test_views_are_reads_and_a_listing_has_no_device() -> None:
    views = _of("config.list")
    assert all(is_read(e.operation) for e in views)
    assert {e.device is None for e in views} == {True, False}  # a view names its config, a listing none


def test_disable_is_a_removal_and_enable_is_not() -> None:
    [disabled] = _of("thing.remove", status="disabled")
    [enabled] = _of("thing.remove", status="enabled")
    assert (disabled.operation, disabled.thing_id) == ("thing.remove", disabled.get("id"))
    assert (enabled.operation, enabled.thing_id) == ("thing.enable", enabled.get("id"))
    [off] = _of("channel.remove", status="disabled")
    [on] = _of("channel.remove", status="enabled")
    assert (off.operation, on.operation, on.channel_id) == ("channel.remove", "channel.enable", on.get("id"))


def test_handlers_with_an_empty_id_are_about_no_device() -> None:
    for op in ("config.remove_handler", "channel.remove_handler"):
        _named, empty = sorted(_of(op), key=lambda e: not e.get("config_id"))
        assert empty.get("config_id") == ""
        assert (empty.device, empty.channel_id) == (None, None)
    [config] = [e for e in _of("config.remove_handler") if e.get("config_id")]
    assert (config.thing_id, config.device) == (config.get("config_id"), config.get("config_id"))
    [channel] = [e for e in _of("channel.remove_handler") if e.get("config_id")]
    assert (channel.channel_id, channel.config_id) == (channel.get("config_id"), None)  # it names the channel


def test_policies_name_the_thing_and_the_channel() -> None:
    for event in _of("policies.add") + _of("policies.delete"):
        assert event.operation in ("policy.add", "policy.remove")
        assert (event.thing_id, event.channel_id) == (event.get("subject"), event.get("object"))
    [add, *_] = _of("policies.add")
    assert sorted(add.get("actions")) == ["m_read", "m_write"]
    users = [e for e in EVENTS if e.stream == "mainflux.users" and e.raw_operation == "policies.authorize"]
    assert users
    assert all(e.channel_id is None for e in users)


def test_bootstrap_success_and_failure() -> None:
    [ok] = _of("thing.bootstrap", success=True)
    [failed] = _of("thing.bootstrap", success=False)
    assert ok.thing_id
    assert ok.success
    assert isinstance(ok.get("channels"), list)
    assert (failed.thing_id, failed.external_id, failed.success) == (None, "cap-ext", False)


def test_cert_update_names_the_thing_and_state_is_an_int() -> None:
    [cert] = _of("cert.update")
    assert cert.thing_id == cert.get("thing_key")
    assert sorted(e.get("state") for e in _of("thing.change_state")) == [0, 1]


def test_metadata_is_a_dict() -> None:
    [ctrl] = [e for e in _of("channel.create") if e.get("name") == "ctrl"]
    assert ctrl.get("metadata") == {"type": "control"}
