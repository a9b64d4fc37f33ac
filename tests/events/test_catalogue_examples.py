"""Every example event of SuperMQ's event catalogue, parsed from the file, normalises into an Event.

The examples are the project's fixture (fixtures/supermq-events-examples.md); where the catalogue
itself is beside the checkout, they are checked to be its examples, every one."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from reactor.events.catalogue import CANONICAL_OPERATIONS
from reactor.events.decode import Decoder
from reactor.events.model import Event
from reactor.events.protowire import wrap_payload
from reactor.events.textforms import parse_json_messages, parse_redis_cli
from tests.conftest import shared

CATALOGUE = Path(__file__).parent / "fixtures" / "supermq-events-examples.md"
_SECTION = re.compile(r"^## (\w+)", re.M)
_BLOCK = re.compile(r"```(redis|json)\n(.*?)```", re.S)
_SERVICE_STREAM = {
    "Users": "supermq.users",
    "Things": "supermq.things",
    "Bootstrap": "supermq.bootstrap",
    "MQTT": "supermq.mqtt",
}


@dataclass(frozen=True)
class Example:
    kind: str
    stream: str
    entry_id: str
    payload: dict[str, str] | str
    line: int

    @property
    def id(self) -> str:
        return f"{self.kind}@{self.line}"


def _blocks(text: str) -> list[tuple[str, str, str]]:
    """(service section, kind, body) of every fenced example block, in order."""
    sections = [(m.start(), m.group(1)) for m in _SECTION.finditer(text)]
    return [
        ([name for start, name in sections if start < b.start()][-1], b.group(1), b.group(2))
        for b in _BLOCK.finditer(text)
    ]


def _examples() -> list[Example]:
    text = CATALOGUE.read_text(encoding="utf-8")
    sections = [(m.start(), m.group(1)) for m in _SECTION.finditer(text)]
    out = []
    for block in _BLOCK.finditer(text):
        kind, body = block.group(1), block.group(2)
        service = [name for start, name in sections if start < block.start()][-1]
        stream = _SERVICE_STREAM[service]
        line = text.count("\n", 0, block.start()) + 1
        parsed = parse_redis_cli(body) if kind == "redis" else parse_json_messages(body)
        assert parsed, f"catalogue line {line}: a {kind} block with no event"
        for item in parsed:
            out.append(
                Example(
                    kind,
                    item.subject.removeprefix("events.") or stream,
                    item.entry_id or "0-1",
                    item.payload,
                    line,
                )
            )
    return out


EXAMPLES = _examples()


def test_the_fixture_holds_every_example_of_the_catalogue() -> None:
    catalogue = shared("reference", "supermq-events.md").read_text(encoding="utf-8")
    assert _blocks(CATALOGUE.read_text(encoding="utf-8")) == _blocks(catalogue)


def test_the_catalogue_has_every_form() -> None:
    text = CATALOGUE.read_text(encoding="utf-8")
    kinds = [e.kind for e in EXAMPLES]
    # Every fenced block was read: at least one event per block of each kind.
    assert kinds.count("redis") >= text.count("```redis")
    assert kinds.count("json") >= text.count("```json")


def _decode(example: Example, decoder: Decoder) -> Event:
    if example.kind == "redis":
        assert isinstance(example.payload, dict)
        return decoder.decode(
            example.payload, source="redis", stream=example.stream, entry_id=example.entry_id
        )
    assert isinstance(example.payload, str)
    return decoder.decode(
        example.payload.encode(), source="nats", stream=example.stream, entry_id=example.entry_id
    )


def _published_operation(example: Example) -> str:
    payload = example.payload if isinstance(example.payload, dict) else json.loads(example.payload)
    return str(payload.get("operation") or payload.get("event_type"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_every_example_normalises(example: Example) -> None:
    event = _decode(example, Decoder())
    assert event.operation in CANONICAL_OPERATIONS, f"{event.raw_operation} → {event.operation}"
    assert event.raw_operation.endswith(_published_operation(example))
    assert isinstance(event.occurred_at_ns, int)
    assert event.occurred_at.year >= 2019
    assert event.stream == example.stream
    if "metadata" in event.fields:
        assert isinstance(event.fields["metadata"], dict)
    for name in ("tags", "channels"):
        if name in event.fields:
            assert isinstance(event.fields[name], list)
    if "success" in event.fields:
        assert isinstance(event.fields["success"], bool)
    about_one = ".list" not in event.operation
    if about_one and event.operation.startswith(("thing.", "config.")) and event.stream != "supermq.users":
        assert event.device, "an event about a thing names its device"


JSON_EXAMPLES = [e for e in EXAMPLES if e.kind == "json"]


@pytest.mark.parametrize("field_number", [5, 6])
@pytest.mark.parametrize("example", JSON_EXAMPLES, ids=[e.id for e in JSON_EXAMPLES])
def test_protobuf_wrapped_form_equals_bare_json(example: Example, field_number: int) -> None:
    decoder = Decoder()
    bare = _decode(example, decoder)
    assert isinstance(example.payload, str)
    wrapped = decoder.decode(
        wrap_payload(example.payload.encode(), field_number),
        source="nats",
        stream=example.stream,
        entry_id=example.entry_id,
    )
    assert (wrapped.operation, wrapped.fields, wrapped.occurred_at_ns, wrapped.device) == (
        bare.operation,
        bare.fields,
        bare.occurred_at_ns,
        bare.device,
    )


REDIS_EXAMPLES = [e for e in EXAMPLES if e.kind == "redis"]


@pytest.mark.parametrize("example", REDIS_EXAMPLES, ids=[e.id for e in REDIS_EXAMPLES])
def test_data_field_form_equals_flat_form(example: Example) -> None:
    """Magistrala v0.15+ puts all fields as JSON in one ``data`` field; the Event is the same."""
    decoder = Decoder()
    flat = _decode(example, decoder)
    assert isinstance(example.payload, dict)
    data = decoder.decode(
        {"data": json.dumps(example.payload)},
        source="redis",
        stream=example.stream,
        entry_id=example.entry_id,
    )
    assert (data.operation, data.fields, data.occurred_at_ns, data.device) == (
        flat.operation,
        flat.fields,
        flat.occurred_at_ns,
        flat.device,
    )
