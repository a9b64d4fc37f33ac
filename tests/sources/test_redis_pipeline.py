"""End to end on a real Redis: XADD → decode → rule → action → XACK; malformed → dead-letter stream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.ops.logging import get_logger
from reactor.settings import Settings, load_settings
from reactor.sources.redis_streams import RedisStreamsSource
from tests.conftest import REDIS_URL

RULES = """
[[rule]]
name = "greet-config"
on = ["config.create"]
when = ["event.state == 0"]

[[rule.actions]]
type = "log"
message = "config {{ event.thing_id }} on {{ event.channels | join(',') }}"
"""


def _settings(tmp_path: Path, unique: str) -> Settings:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(RULES)
    return load_settings(
        None,
        redis={
            "url": REDIS_URL,
            "streams": [f"test.{unique}.bootstrap"],
            "group": "g",
            "consumer": "c1",
            "start_id": "0",
            "block_ms": 50,
            "dlq_stream": f"test.{unique}.dlq",
        },
        rules={"dir": rules},
    )


async def _run_until(reactor: Reactor, outcomes: list[Outcome], count: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(reactor.run(stop))
    async with asyncio.timeout(10):
        while len(outcomes) < count:
            await asyncio.sleep(0.02)
    stop.set()
    await task


async def test_flat_and_data_events_reach_the_action_and_are_acked(
    redis_client: aioredis.Redis, tmp_path: Path, unique: str
) -> None:
    settings = _settings(tmp_path, unique)
    stream = settings.redis.streams[0]
    flat_id = await redis_client.xadd(
        stream,
        {
            "operation": "config.create",
            "thing_id": "t-flat",
            "state": "0",
            "channels": "[c1,c2]",
            "occurred_at": "1693313286544243035",
        },
    )
    data_id = await redis_client.xadd(
        stream,
        {
            "data": json.dumps(
                {
                    "operation": "bootstrap.config.create",
                    "thing_id": "t-data",
                    "state": 0,
                    "channels": ["c3"],
                    "occurred_at": 1693313286544243035,
                }
            )
        },
    )
    outcomes: list[Outcome] = []
    reactor = Reactor.build(
        settings, RedisStreamsSource(settings.redis), get_logger("test"), observers=[outcomes.append]
    )
    await _run_until(reactor, outcomes, 2)

    by_id = {o.delivery.entry_id: o for o in outcomes}
    assert set(by_id) == {flat_id, data_id}
    messages = {eid: o.rules[0].steps[0].result["message"] for eid, o in by_id.items()}
    assert messages == {flat_id: "config t-flat on c1,c2", data_id: "config t-data on c3"}
    pending = await redis_client.xpending(stream, "g")
    assert pending["pending"] == 0
    assert await redis_client.xlen(settings.redis.dlq_stream) == 0


async def test_malformed_event_is_dead_lettered_and_the_worker_goes_on(
    redis_client: aioredis.Redis, tmp_path: Path, unique: str
) -> None:
    settings = _settings(tmp_path, unique)
    stream = settings.redis.streams[0]
    bad_id = await redis_client.xadd(stream, {"data": "{not json"})
    no_op_id = await redis_client.xadd(stream, {"thing_id": "x"})
    good_id = await redis_client.xadd(
        stream, {"operation": "config.create", "thing_id": "t-ok", "state": "0", "channels": "[c9]"}
    )
    outcomes: list[Outcome] = []
    reactor = Reactor.build(
        settings, RedisStreamsSource(settings.redis), get_logger("test"), observers=[outcomes.append]
    )
    await _run_until(reactor, outcomes, 3)

    good = next(o for o in outcomes if o.delivery.entry_id == good_id)
    assert good.rules[0].steps[0].ok
    dead: Any = await redis_client.xrange(settings.redis.dlq_stream)
    records = {fields["entry_id"]: fields for _, fields in dead}
    assert set(records) == {bad_id, no_op_id}
    assert records[bad_id]["reason"] == "malformed"
    assert records[bad_id]["stream"] == stream
    assert "'data' field is not valid JSON" in records[bad_id]["error"]
    assert json.loads(records[bad_id]["event"]) == {"data": "{not json"}
    assert "no 'operation' field" in records[no_op_id]["error"]
    assert (await redis_client.xpending(stream, "g"))["pending"] == 0


async def test_an_entry_read_but_not_settled_is_processed_on_restart(
    redis_client: aioredis.Redis, tmp_path: Path, unique: str
) -> None:
    """A consumer that read an entry and died before acking gets it again from its pending list."""
    settings = _settings(tmp_path, unique)
    stream = settings.redis.streams[0]
    source = RedisStreamsSource(settings.redis)
    await source.start()
    entry_id = await redis_client.xadd(
        stream, {"operation": "config.create", "thing_id": "t1", "state": "0", "channels": "[]"}
    )
    first = await source.read(10, 50)  # the backlog read (empty), then...
    first = first or await source.read(10, 50)
    assert [d.entry_id for d in first] == [entry_id]
    await source.close()  # "crash": never settled

    outcomes: list[Outcome] = []
    reactor = Reactor.build(
        settings, RedisStreamsSource(settings.redis), get_logger("test"), observers=[outcomes.append]
    )
    await _run_until(reactor, outcomes, 1)
    assert [o.delivery.entry_id for o in outcomes] == [entry_id]
    assert (await redis_client.xpending(stream, "g"))["pending"] == 0
