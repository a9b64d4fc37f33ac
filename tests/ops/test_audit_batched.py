"""The SQLite audit trail writes a settled batch in one transaction (issue 17).

Each row was its own autocommitted transaction (a WAL commit, synced, per action): with the
deployed configuration it took ~63% of the event loop in the match-only benchmark. One
transaction per batch also makes a batch all or nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from pathlib import Path

import pytest

from reactor.actions.log import LogParams
from reactor.delivery.executor import RuleOutcome, StepOutcome
from reactor.delivery.outcome import Outcome
from reactor.events.decode import Decoder
from reactor.ops.audit import AuditRow, SQLiteAudit, rows_for
from reactor.sources.base import Delivery


def _rows(count: int) -> list[AuditRow]:
    now = time.time_ns()
    return [
        AuditRow(now + i, "s", f"{i}-0", "dev", "op", "r", "a", "noop", "{}", "success", 1, 0.1, "")
        for i in range(count)
    ]


def _count(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM audit").fetchone()[0])


async def test_a_batch_is_one_transaction_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    trail = SQLiteAudit(path)
    rows = _rows(10)
    bad = dataclasses.replace(rows[5], params=object())  # type: ignore[arg-type]  # cannot be bound
    with pytest.raises(sqlite3.Error):
        await trail.write([*rows[:5], bad, *rows[6:]])
    assert _count(path) == 0  # not the five before the bad row
    await trail.write(rows)  # the connection is usable after the failed batch
    assert _count(path) == 10
    assert [r.entry_id for r in await trail.query(device="dev")] == [f"{i}-0" for i in range(10)]
    await trail.close()


async def test_the_loop_runs_while_a_batch_is_inserted_and_batches_keep_their_order(tmp_path: Path) -> None:
    """A batch goes into SQLite in a thread: the event loop is not held for its insert; the
    batches still land in the order they were written, and closing waits for the one in hand."""
    trail = SQLiteAudit(tmp_path / "state.sqlite3")
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    first, second = _rows(20_000), _rows(3)
    writes = [asyncio.create_task(trail.write(first)), asyncio.create_task(trail.write(second))]
    before = ticks
    await asyncio.gather(*writes)
    done.set()
    await ticker
    assert ticks - before > 10  # the loop went round while 20,003 rows were inserted
    entries = [r.entry_id for r in await trail.query(limit=30_000)]
    assert entries == [r.entry_id for r in [*first, *second]]
    closing = asyncio.create_task(trail.write(_rows(5_000)))
    await asyncio.sleep(0)
    await trail.close()  # after the write in hand, not under it
    await closing
    assert _count(tmp_path / "state.sqlite3") == 25_003


def test_static_parameters_are_masked_by_the_secrets_of_each_event() -> None:
    """The text of an action's static parameters is reused between events without secrets,
    never for an event whose secret values they quote."""
    params = LogParams(message="device key is kEy-77-secret-value")
    decoder = Decoder()
    plain = decoder.decode(
        {"operation": "config.create", "thing_id": "t1"}, source="t", stream="s", entry_id="1-0"
    )
    secret = decoder.decode(
        {"operation": "config.create", "thing_id": "t1", "thing_key": "kEy-77-secret-value"},
        source="t",
        stream="s",
        entry_id="2-0",
    )
    texts = []
    for event in (plain, plain, secret, plain):
        step = StepOutcome("a", "log", ok=True, attempts=1, duration_s=0.0, params=params)
        (row,) = rows_for(Outcome(Delivery("s", event.entry_id, {}), event, [RuleOutcome("r", [step])]))
        texts.append(row.params)
    assert texts[0] == texts[1] == texts[3]
    assert "kEy-77-secret-value" in texts[0]  # no secret of that event: the message as it is
    assert "kEy-77-secret-value" not in texts[2]
    assert "***" in texts[2]
