"""The SQLite audit trail writes a settled batch in one transaction (issue 17).

Each row was its own autocommitted transaction (a WAL commit, synced, per action): with the
deployed configuration it took ~63% of the event loop in the match-only benchmark. One
transaction per batch also makes a batch all or nothing.
"""

from __future__ import annotations

import dataclasses
import gc
import sqlite3
import time
import weakref
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


async def test_a_batch_is_written_to_the_wal_unsynced_as_the_state_store_writes(tmp_path: Path) -> None:
    """synchronous=NORMAL, as the state store's connection to the same file (issue 17): FULL
    synced the WAL at each settled batch on the event loop (2.7 ms median in the latency
    benchmark, the disk shared); a killed process loses nothing either way."""
    trail = SQLiteAudit(tmp_path / "state.sqlite3")
    try:
        assert trail._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        await trail.close()


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
        step = StepOutcome("a", "log", ok=True, attempts=1, duration_s=0.0, params=params, static=True)
        (row,) = rows_for(Outcome(Delivery("s", event.entry_id, {}), event, [RuleOutcome("r", [step])]))
        texts.append(row.params)
    assert texts[0] == texts[1] == texts[3]
    assert "kEy-77-secret-value" in texts[0]  # no secret of that event: the message as it is
    assert "kEy-77-secret-value" not in texts[2]
    assert "***" in texts[2]


def test_rendered_parameters_are_not_kept_after_their_row() -> None:
    """Only an action's static parameters (the same object every event) have their text reused:
    parameters rendered per event are not held by the audit once their row is built (memory
    bounded by the rules, not by what events carry)."""
    decoder = Decoder()
    payload = {"operation": "config.create", "thing_id": "t1"}
    event = decoder.decode(payload, source="t", stream="s", entry_id="1-0")
    kept = []
    for i in range(50):
        rendered = LogParams(message="x" * 10_000 + str(i))
        step = StepOutcome("a", "log", ok=True, attempts=1, duration_s=0.0, params=rendered)
        (row,) = rows_for(Outcome(Delivery("s", event.entry_id, {}), event, [RuleOutcome("r", [step])]))
        assert row.params.endswith(f'{i}"}}')
        kept.append(weakref.ref(rendered))
        del rendered, step, row
    gc.collect()
    assert [r for r in kept if r() is not None] == []
