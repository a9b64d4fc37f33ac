"""Every write path is total: dead-letter records, the audit trail, log lines and the state
store never raise on any event content (lone surrogates, nesting of any depth, bytes), and
secrets stay masked however deep they sit."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog

from reactor.delivery.executor import RuleOutcome, StepOutcome
from reactor.delivery.outcome import Outcome
from reactor.delivery.state import RedisStateStore, SQLiteStateStore
from reactor.events.model import Event, raw_view
from reactor.ops.audit import SQLiteAudit, rows_for
from reactor.ops.logging import configure_logging
from reactor.redact import MASK, redact
from reactor.settings import RedisSettings
from reactor.sources.base import DeadLetter, Delivery
from reactor.sources.redis_streams import RedisStreamsSource
from tests.conftest import REDIS_URL

SURROGATE = "\ud800"


def _deep(depth: int, leaf: Any) -> Any:
    """A list nested ``depth`` deep (built without recursion)."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def _deep_json(depth: int) -> str:
    return '{"client_key":"s3cret-key","x":' + "[" * depth + "]" * depth + "}"


def _encodable(fields: dict[str, str]) -> None:
    for value in fields.values():
        value.encode("utf-8")  # what redis-py does with each value: strict UTF-8


def test_dead_letter_records_are_total_and_masked() -> None:
    for event in (
        {"data": _deep_json(10_000)},  # too deep to parse: masked as text
        {"data": _deep_json(500)},  # parses, deeper than redaction goes: masked whole below MAX_DEPTH
        {"x": _deep(5_000, {"client_key": "s3cret-key"})},
        {"thing_id": SURROGATE, "name": f"a{SURROGATE}b"},
    ):
        record = DeadLetter("s", f"1-0{SURROGATE}", "action_failed", f"no attribute '{SURROGATE}'", event)
        fields = record.to_fields()
        _encodable(fields)
        assert "s3cret-key" not in fields["event"]
        json.loads(fields["event"])
    assert "\\ud800" in DeadLetter("s", "1-0", "x", SURROGATE, {}).to_fields()["error"]


def test_secret_fields_that_are_not_text_stay_masked_in_their_base64_form() -> None:
    entry: dict[Any, Any] = {
        "operation": "config.create",
        "client_key": b"s3cr\xffet",
        b"thing_key\xfe": b"k3y",
    }
    raw = raw_view(entry)
    event = DeadLetter("s", "1-0", "malformed", "not UTF-8", raw).to_fields()["event"]
    assert json.loads(event)["_b64"] == {"client_key": MASK, "thing_key\\xfe": MASK}


def test_a_record_of_an_unserialisable_event_says_so() -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    event: dict[Any, Any] = {"a": cycle, 1: "x", "b": "y"}  # keys that do not sort
    fields = DeadLetter("s", "1-0", "internal_error", "boom", event).to_fields()
    assert "unserialisable" in fields["event"] or "nested deeper" in fields["event"]


async def test_settling_hostile_records_on_redis_does_not_raise(
    redis_client: aioredis.Redis, unique: str
) -> None:
    settings = RedisSettings(
        url=REDIS_URL, streams=[f"w{unique}.bootstrap"], group="g", dlq_stream=f"w{unique}.dlq"
    )
    source = RedisStreamsSource(settings)
    await source.start()
    try:
        entry = str(await redis_client.xadd(settings.streams[0], {"operation": "x"}))
        await redis_client.xreadgroup("g", settings.consumer, {settings.streams[0]: ">"})
        delivery = Delivery(settings.streams[0], entry, {"operation": "x"})
        dead = DeadLetter(
            delivery.stream,
            entry,
            "action_failed",
            f"id {SURROGATE}",
            {"data": _deep_json(500), "t": SURROGATE},
        )
        await source.settle([delivery], [dead])
    finally:
        await source.close()
    assert (await redis_client.xpending(settings.streams[0], "g"))["pending"] == 0
    records: Any = await redis_client.xrange(settings.dlq_stream)
    assert "\\ud800" in records[0][1]["error"]


def test_redaction_of_any_depth_masks_below_its_limit_and_returns() -> None:
    masked = redact({"x": _deep(50_000, "leaf"), "token": "t0ken-value"})
    assert masked["token"] == MASK
    assert "nested deeper" in json.dumps(masked)


def test_log_lines_with_surrogates_and_deep_values_are_written(tmp_path: Path) -> None:
    for fmt in ("json", "console"):
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
        configure_logging("INFO", fmt, out)
        try:
            structlog.get_logger("t").warning(
                "event.dead_lettered", error=f"id {SURROGATE}", deep=_deep(5_000, 1)
            )
        finally:
            structlog.reset_defaults()
        buffer: Any = out.buffer
        written = buffer.getvalue().decode("utf-8")
        assert "ud800" in written
        assert "event.dead_lettered" in written


def _event(**fields: Any) -> Event:
    return Event(
        source="redis",
        stream="s",
        entry_id="1-0",
        operation=f"config.create{SURROGATE}",
        raw_operation="config.create",
        occurred_at_ns=0,
        thing_id=SURROGATE,
        fields=fields,
    )


async def test_audit_rows_of_hostile_events_are_written(tmp_path: Path) -> None:
    step = StepOutcome(
        "a", "log", False, 1, 0.0, error=f"no {SURROGATE}", params={"m": SURROGATE, "d": _deep(400, 1)}
    )
    outcome = Outcome(Delivery("s", "1-0", {}), _event(), [RuleOutcome("r", [step], step)])
    audit = SQLiteAudit(tmp_path / "audit.sqlite3")
    try:
        await audit.record([outcome])
        (row,) = await audit.query(entry_id="1-0")
    finally:
        await audit.close()
    assert row.device == "\\ud800"
    assert rows_for(outcome)[0].error == "no \\ud800"


async def test_the_state_store_records_any_result(
    tmp_path: Path, redis_client: aioredis.Redis, unique: str
) -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    sqlite = SQLiteStateStore(tmp_path / "state.sqlite3", 3600)
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    stores = [sqlite, RedisStateStore(client, 3600, prefix=f"w{unique}")]
    try:
        for store in stores:
            for n, result in enumerate((_deep(5_000, 1), cycle, SURROGATE, {"k": f"v{SURROGATE}"})):
                await store.record("s/1-0", "r", f"a{n}", result)
            assert set(await store.completed("s/1-0")) == {"r/a0", "r/a1", "r/a2", "r/a3"}
    finally:
        for store in stores:
            await store.close()
