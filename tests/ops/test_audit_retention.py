"""The audit trail is pruned: a retention and a row cap, off the per-event path (issue 19).

The SQLite trail was never pruned: every action of every event stayed in the state file forever.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from reactor.app import Reactor, build_audit
from reactor.ops.audit import PRUNE_BATCH, AuditRow, MemoryAudit, RedisAudit, SQLiteAudit, keep_pruned
from reactor.ops.logging import get_logger
from reactor.settings import load_settings
from reactor.sources.memory import MemorySource

DAY_NS = 86_400 * 1_000_000_000


def _rows(count: int, at_ns: int, prefix: str = "") -> list[AuditRow]:
    return [
        AuditRow(at_ns + i, "s", f"{prefix}{i}-0", "dev", "op", "r", "a", "noop", "{}", "success", 1, 0.1, "")
        for i in range(count)
    ]


def _count(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM audit").fetchone()[0])


async def test_sqlite_rows_past_the_retention_are_pruned(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    trail = SQLiteAudit(path, retention_s=7 * 86_400)
    now = time.time_ns()
    await trail.write(_rows(100, now - 8 * DAY_NS, "old"))
    await trail.write(_rows(10, now - 6 * DAY_NS, "week"))
    await trail.write(_rows(5, now, "new"))
    assert await trail.prune(now) == 100
    assert _count(path) == 15
    kept = [r.entry_id for r in await trail.query(device="dev")]
    assert kept == [*(f"week{i}-0" for i in range(10)), *(f"new{i}-0" for i in range(5))]
    assert await trail.prune(now) == 0  # nothing more to do
    assert await trail.prune(now + 2 * DAY_NS) == 10  # the week-old ones come due
    await trail.close()


async def test_sqlite_keeps_at_most_max_rows_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    trail = SQLiteAudit(path, retention_s=7 * 86_400, max_rows=50)
    now = time.time_ns()
    await trail.write(_rows(120, now))
    assert await trail.prune(now) == 70
    kept = [r.entry_id for r in await trail.query(device="dev")]
    assert kept == [f"{i}-0" for i in range(70, 120)]
    await trail.close()


async def test_pruning_lets_the_loop_run_between_batches(tmp_path: Path) -> None:
    trail = SQLiteAudit(tmp_path / "state.sqlite3", retention_s=86_400)
    now = time.time_ns()
    await trail.write(_rows(3 * PRUNE_BATCH + 5, now - 2 * DAY_NS))
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = ticks
    assert await trail.prune(now) == 3 * PRUNE_BATCH + 5
    done = True
    await task
    assert ticks - started >= 3  # one batch at a time: the loop ran between them
    await trail.close()


async def test_redis_entries_past_the_retention_are_trimmed(redis_client: aioredis.Redis) -> None:
    stream = f"audit-{uuid.uuid4().hex[:8]}"
    trail = RedisAudit(redis_client, stream, retention_s=86_400)
    try:
        now = time.time_ns()
        await trail.write(_rows(20, now))
        assert await trail.prune(now) == 0
        assert await redis_client.xlen(stream) == 20
        assert await trail.prune(now + 2 * DAY_NS) == 20  # a day later than retention: all due
        assert await redis_client.xlen(stream) == 0
    finally:
        await redis_client.delete(stream)


async def test_memory_rows_past_the_retention_are_dropped() -> None:
    trail = MemoryAudit(keep=100, retention_s=86_400)
    now = time.time_ns()
    await trail.write([*_rows(3, now - 2 * DAY_NS, "old"), *_rows(2, now, "new")])
    assert await trail.prune(now) == 3
    assert [r.entry_id for r in await trail.query()] == ["new0-0", "new1-0"]


async def test_keep_pruned_prunes_at_start_and_every_interval_until_stopped(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    trail = SQLiteAudit(path, retention_s=1.0)
    await trail.write(_rows(10, time.time_ns() - DAY_NS))
    stop = asyncio.Event()
    task = asyncio.create_task(keep_pruned(trail, stop, get_logger("test"), interval_s=0.05))
    await asyncio.sleep(0.02)
    assert _count(path) == 0  # at start: what a previous run left
    await trail.write(_rows(4, time.time_ns()))
    async with asyncio.timeout(5):
        while _count(path):  # one second later, the next rounds remove them
            await asyncio.sleep(0.05)
    stop.set()
    async with asyncio.timeout(1):
        await task
    await trail.close()


async def test_the_daemon_prunes_its_sqlite_trail_from_the_settings(tmp_path: Path) -> None:
    """At start (what a previous run left), with ops.audit_retention_s and ops.audit_max_rows."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text('[[rule]]\nname = "n"\non = ["x"]\n[[rule.actions]]\ntype = "noop"\n')
    settings = load_settings(
        None,
        rules={"dir": rules, "reload_interval_s": 0},
        state={"backend": "sqlite", "path": tmp_path / "state.sqlite3"},
        ops={"audit_retention_s": 3600, "audit_max_rows": 1000, "listen": ""},
    )
    old = build_audit(settings)
    assert isinstance(old, SQLiteAudit)
    now = time.time_ns()
    await old.write([*_rows(30, now - 2 * 3600 * 1_000_000_000, "old"), *_rows(1100, now, "new")])
    await old.close()
    reactor = Reactor.build(settings, MemorySource(finite=False), get_logger("test"))
    stop = asyncio.Event()
    task = asyncio.create_task(reactor.run(stop))
    try:
        async with asyncio.timeout(5):
            while _count(settings.state.path) > 1000:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await task
    reader = SQLiteAudit(settings.state.path)
    kept = await reader.query(limit=2000)
    assert len(kept) == 1000
    assert kept[0].entry_id == "new100-0"  # the 30 past the retention, then the oldest 100 new ones
    await reader.close()
