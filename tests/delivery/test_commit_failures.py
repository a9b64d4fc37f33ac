"""A commit of the SQLite state store that fails (a full disk, simulated with ``PRAGMA
max_page_count``) is handled as README "Delivery contract" says on every path: the records stay
pending for the next commit, the batch is acked all the same, ``state.commit_failed`` is logged;
a trial mark waits the store out; the shutdown completes. Real SQLite files throughout."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from reactor.app import Reactor
from reactor.delivery.state import SQLiteStateStore
from reactor.errors import StateStoreError
from reactor.ops.logging import get_logger
from reactor.sources.base import Delivery
from reactor.sources.memory import MemorySource
from tests.delivery.test_group_commit import _hook, _settings


def _fill(store: SQLiteStateStore) -> None:
    """The store's file can grow no more: a full disk."""
    db = store._db
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
    for n in range(100_000):
        try:
            db.execute("INSERT INTO steps VALUES (?, ?, ?, ?)", (f"junk{n}", "s", "z" * 20, 1e12))
        except sqlite3.OperationalError as exc:  # "database or disk is full"
            if "full" not in str(exc):
                raise
            return
    raise AssertionError("the file never filled")


def _free(store: SQLiteStateStore) -> None:
    store._db.execute("PRAGMA max_page_count=1000000")


def _committed(path: Path, prefix: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM steps WHERE event LIKE ?", (f"{prefix}%",)).fetchone()[0])


async def _full_store(path: Path, interval_s: float) -> SQLiteStateStore:
    store = SQLiteStateStore(path, 3600, None, interval_s)
    await store.record("seed", "r", "a", 1)
    await store.flush()
    _fill(store)
    return store


@pytest.mark.parametrize("interval_s", [0, 0.005])
async def test_records_stay_pending_after_a_failed_commit_and_are_committed_once_space_is_freed(
    tmp_path: Path, interval_s: float
) -> None:
    path = tmp_path / "state.sqlite3"
    store = await _full_store(path, interval_s)
    try:
        for n in range(50):
            await store.record(f"e{n}", "r", "a", {"pad": "y" * 300})  # interval 0: no raw sqlite error
        await asyncio.sleep(0.02)  # the interval's commit, failed
        with pytest.raises(StateStoreError, match="full"):
            await store.flush()
        assert (await store.completed("e49")) == {"r/a": {"pad": "y" * 300}}
        assert _committed(path, "e") == 0
        _free(store)
        await store.flush()
        assert _committed(path, "e") == 50
    finally:
        await store.close()


def _record_close(store: Any, name: str, closed: list[str]) -> None:
    close = store.close

    async def recorded() -> None:
        closed.append(name)
        await close()

    store.close = recorded


def _events(n: int) -> list[tuple[str, dict[str, str]]]:
    return [("gf.bootstrap", {"operation": "config.update", "thing_id": f"d{k}"}) for k in range(n)]


@pytest.mark.parametrize("interval_ms", [0, 5])
async def test_a_full_disk_differs_between_intervals_only_in_speed(tmp_path: Path, interval_ms: int) -> None:
    """Interval 0 commits in ``record``: a failure there is no ``internal_error`` dead letter; the
    events are acted on and acked, ``state.commit_failed`` logged, and the daemon stops cleanly."""
    async with _hook() as hook:
        hook.release.set()
        settings = _settings(tmp_path, "gf.bootstrap", hook.url, commit_interval_ms=interval_ms)
        state = await _full_store(tmp_path / "state.sqlite3", interval_ms / 1000)
        source = MemorySource(_events(5))
        settings = settings.model_copy(update={"source": "memory"})
        reactor = Reactor.build(settings, source, get_logger("t"), state=state)
        closed: list[str] = []
        for name in ("audit", "gates"):
            _record_close(getattr(reactor, name), name, closed)
        with capture_logs() as logs:
            await asyncio.wait_for(reactor.run(asyncio.Event()), 20)
    assert source.dead_letters == []
    assert len(source.acked) == 5
    assert hook.count("second") == 5
    assert any(e["event"] == "state.commit_failed" for e in logs), logs
    assert closed == ["audit", "gates"]  # after the store's failed last commit


async def test_an_entry_run_alone_waits_out_a_full_disk_and_runs_once_it_is_freed(tmp_path: Path) -> None:
    """The trial mark (``begin_trial``) must be durable before the entry runs alone: a commit that
    fails is waited out like a state store outage (``state.unavailable``), never the reader's death."""
    async with _hook() as hook:
        hook.release.set()
        settings = _settings(tmp_path, "gf.bootstrap", hook.url).model_copy(update={"source": "memory"})
        state = await _full_store(tmp_path / "state.sqlite3", 0.005)
        source = MemorySource([])
        payload = {"operation": "config.update", "thing_id": "d0"}
        source.add_delivery(
            Delivery("gf.bootstrap", "1-0", payload, deliveries=settings.worker.max_deliveries + 1)
        )
        reactor = Reactor.build(settings, source, get_logger("t"), state=state)
        with capture_logs() as logs:
            run = asyncio.create_task(reactor.run(asyncio.Event()))
            async with asyncio.timeout(10):
                while not any(e["event"] == "state.unavailable" for e in logs):
                    assert not run.done(), logs
                    await asyncio.sleep(0.05)
            assert hook.count("first") == 0  # not run before its mark is durable
            _free(state)
            await asyncio.wait_for(run, 20)
    assert len(source.acked) == 1
    assert hook.count("second") == 1
    assert source.dead_letters == []


async def test_a_transaction_left_open_does_not_block_every_later_commit(tmp_path: Path) -> None:
    """A ROLLBACK that failed leaves the connection in a transaction: the next BEGIN must not
    fail for good ("cannot start a transaction within a transaction")."""
    path = tmp_path / "state.sqlite3"
    store = SQLiteStateStore(path, 3600, None, 0.005)
    try:
        store._db.execute("BEGIN")  # as a failed ROLLBACK leaves it
        await store.record("e0", "r", "a", 1)
        await store.flush()
        assert _committed(path, "e") == 1
    finally:
        await store.close()


async def test_pending_records_are_bounded_and_the_store_is_waited_out_when_full(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = await _full_store(path, 0.005)
    store._max_pending = 3
    try:
        for n in range(3):
            await store.accepting()
            await store.record(f"e{n}", "r", "a", n)
        with pytest.raises(StateStoreError, match="full"):
            await store.accepting()  # no more actions until the store takes what it holds
        assert len(store._pending) == 3  # none dropped
        _free(store)
        await store.accepting()
        assert _committed(path, "e") == 3
    finally:
        await store.close()


async def test_the_daemon_stops_acting_at_the_bound_and_runs_no_step_twice(tmp_path: Path) -> None:
    async with _hook() as hook:
        hook.release.set()
        settings = _settings(tmp_path, "gf.bootstrap", hook.url).model_copy(update={"source": "memory"})
        state = await _full_store(tmp_path / "state.sqlite3", 0.005)
        state._max_pending = 4
        source = MemorySource(_events(20))
        reactor = Reactor.build(settings, source, get_logger("t"), state=state)
        with capture_logs() as logs:
            run = asyncio.create_task(reactor.run(asyncio.Event()))
            async with asyncio.timeout(10):
                while not any(e["event"] == "state.unavailable" for e in logs):
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            held = sum(hook.calls.values())
            await asyncio.sleep(0.5)
            assert sum(hook.calls.values()) == held < 40, hook.calls  # acting stopped at the bound
            assert len(state._pending) <= 4 + 20  # the bound, past it by the steps then running
            _free(state)
            await asyncio.wait_for(run, 30)
    assert len(source.acked) == 20
    assert source.dead_letters == []
    assert set(hook.calls.values()) == {1}, hook.calls  # no step ran twice


async def test_batches_acked_over_failed_commits_keep_their_records_until_space_is_freed(
    tmp_path: Path,
) -> None:
    """The real store's case of test_group_commit's ``_Refusing``: a batch acked over a failed
    commit keeps its records, and the next batch's commit, once space is freed, takes them."""
    async with _hook() as hook:
        hook.release.set()
        settings = _settings(tmp_path, "gf.bootstrap", hook.url).model_copy(update={"source": "memory"})
        path = tmp_path / "state.sqlite3"
        state = await _full_store(path, 0.005)
        source = MemorySource([])
        reactor = Reactor.build(settings, source, get_logger("t"), state=state)
        await source.start()
        try:
            with capture_logs() as logs:
                for n in range(5):
                    source.add("gf.bootstrap", {"operation": "config.update", "thing_id": f"d{n}"})
                await reactor.worker.process(await source.read(10, 10))
            assert len(source.acked) == 5
            assert any(e["event"] == "state.commit_failed" for e in logs), logs
            assert _committed(path, "gf.bootstrap") == 0
            _free(state)
            source.add("gf.bootstrap", {"operation": "config.update", "thing_id": "d5"})
            await reactor.worker.process(await source.read(10, 10))
            assert _committed(path, "gf.bootstrap") == 12  # 6 events x 2 steps
        finally:
            await state.close()
