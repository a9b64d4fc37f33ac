"""The SQLite state store commits completed steps in groups (issue 17) and keeps the delivery
contract (README, "Delivery contract"): a step is durable no later than the ack of its event, and
a step whose event is still running at most ``state.commit_interval_ms`` after it completed. A
real ``reactor run`` is SIGKILLed while the second step of every event hangs: the first steps,
completed well over the interval before, are not run again by the next process; with an interval
longer than the run they are (the window the README states, shown to exist)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from structlog.testing import capture_logs

from reactor.app import Reactor
from reactor.delivery.state import MemoryStateStore, SQLiteStateStore
from reactor.errors import StateStoreError
from reactor.ops.audit import SQLiteAudit
from reactor.ops.logging import get_logger
from reactor.settings import load_settings
from reactor.sources.base import DeadLetter, Delivery
from reactor.sources.memory import MemorySource
from reactor.sources.redis_streams import RedisStreamsSource
from tests.conftest import REDIS_URL
from tests.delivery.helpers import spawn_daemon

EVENTS = 20
RULE = """
[[rule]]
name = "two"
on = ["config.update"]
[[rule.actions]]
id = "first"
type = "http.request"
method = "PUT"
url = "{url}/first/{{{{ event.thing_id }}}}"
[[rule.actions]]
id = "second"
type = "http.request"
method = "PUT"
url = "{url}/second/{{{{ event.thing_id }}}}"
"""


class Hook:
    """The actions' target: counts each step's calls per device; ``second`` hangs until released."""

    def __init__(self) -> None:
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.release = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        step, device = request.match_info["step"], request.match_info["device"]
        self.calls[(step, device)] += 1
        if step == "second":
            await self.release.wait()
        return web.Response(status=204)

    def count(self, step: str) -> int:
        return sum(1 for (s, _), n in self.calls.items() if s == step and n)


@contextlib.asynccontextmanager
async def _hook() -> AsyncIterator[Hook]:
    hook = Hook()
    app = web.Application()
    app.router.add_put("/{step}/{device}", hook.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        yield hook
    finally:
        hook.release.set()
        await runner.cleanup()


def _committed(path: Path, event: str | None = None) -> list[tuple[str, str]]:
    """The (event, step) rows another connection sees: what a process killed now leaves."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        if event is None:
            return db.execute("SELECT event, step FROM steps").fetchall()
        return db.execute("SELECT event, step FROM steps WHERE event = ?", (event,)).fetchall()


async def test_pending_steps_are_seen_at_once_and_committed_by_flush_or_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SQLiteStateStore(path, 3600, commit_interval_s=0.2)
    audit = SQLiteAudit(path)
    try:
        await store.record("s/1-0", "r", "a", {"n": 1})
        assert await store.completed("s/1-0") == {"r/a": {"n": 1}}  # this process sees it at once
        assert _committed(path) == []  # not yet durable
        started = time.monotonic()
        await audit.write([])  # the audit trail's connection to the same file is not held up
        await audit.record([])
        assert time.monotonic() - started < 0.1
        await store.flush()
        assert _committed(path) == [("s/1-0", "r/a")]
        await store.record("s/2-0", "r", "a", 2)
        await asyncio.sleep(0.3)  # the interval's commit, without a flush
        assert ("s/2-0", "r/a") in _committed(path)
        await store.record("s/3-0", "r", "a", 3)
    finally:
        await store.close()
        await audit.close()
    assert ("s/3-0", "r/a") in _committed(path)  # closing commits what is pending


async def test_every_step_of_an_acked_event_was_durable_before_its_ack(tmp_path: Path, unique: str) -> None:
    """The interval is longer than the run: only the settler's commit before the acks can do it."""
    stream = f"gc{unique}.bootstrap"
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    async with _hook() as hook:
        hook.release.set()
        settings = _settings(tmp_path, stream, hook.url, commit_interval_ms=10_000)
        reactor = Reactor.build(settings, RedisStreamsSource(settings.redis), get_logger("test"))
        seen_at_ack: list[tuple[str, int]] = []
        settle = reactor.source.settle

        async def checked(done: Sequence[Delivery], dead: Sequence[DeadLetter]) -> None:
            seen_at_ack.extend((d.key, len(_committed(settings.state.path, d.key))) for d in done)
            await settle(done, dead)

        reactor.source.settle = checked  # type: ignore[method-assign]
        for n in range(EVENTS):
            await client.xadd(stream, {"operation": "config.update", "thing_id": f"d{n}"})
        stop = asyncio.Event()
        task = asyncio.create_task(reactor.run(stop))
        try:
            async with asyncio.timeout(20):
                while len(seen_at_ack) < EVENTS:
                    await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task
            await client.delete(stream)
            await client.aclose()
    assert sorted(n for _, n in seen_at_ack) == [2] * EVENTS  # both steps of each, committed first


@pytest.mark.parametrize(("interval_ms", "first_steps_run_again"), [(5, 0), (10_000, EVENTS)])
async def test_a_kill_while_events_run_repeats_only_steps_within_the_commit_interval(
    tmp_path: Path, unique: str, interval_ms: int, first_steps_run_again: int
) -> None:
    stream = f"gk{unique}.bootstrap"
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with _hook() as hook:
            config = _config(tmp_path, stream, unique, hook.url, interval_ms)
            for n in range(EVENTS):
                await client.xadd(stream, {"operation": "config.update", "thing_id": f"d{n}"})
            log = tmp_path / "reactor.log"
            proc = await spawn_daemon(config, log)
            async with asyncio.timeout(30):  # every first step done, every second one hanging
                while hook.count("second") < EVENTS:
                    assert proc.returncode is None, log.read_text()[-3000:]
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # far past the short interval
            proc.kill()
            await proc.wait()
            assert (await client.xpending(stream, "g"))["pending"] == EVENTS  # none acked
            hook.release.set()
            proc = await spawn_daemon(config, log)
            async with asyncio.timeout(30):
                while (await client.xpending(stream, "g"))["pending"]:
                    assert proc.returncode is None, log.read_text()[-3000:]
                    await asyncio.sleep(0.05)
            proc.terminate()
            assert await proc.wait() == 0
    finally:
        await client.delete(stream, f"gk{unique}.dlq")
        await client.aclose()
    again = sum(1 for (step, _), n in hook.calls.items() if step == "first" and n > 1)
    assert again == first_steps_run_again, dict(hook.calls)
    assert all(hook.calls[("second", f"d{n}")] == 2 for n in range(EVENTS))  # cut off, so run again


def _settings(tmp_path: Path, stream: str, url: str, **state: Any) -> Any:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "r.toml").write_text(RULE.format(url=url))
    return load_settings(
        None,
        redis={"url": REDIS_URL, "streams": [stream], "group": "g", "consumer": "c1", "start_id": "0",
               "dlq_stream": f"{stream}.dlq"},
        worker={"block_ms": 50},
        events={"families": [stream.split(".", maxsplit=1)[0]]},
        rules={"dir": rules, "reload_interval_s": 0},
        state={"path": tmp_path / "state.sqlite3", **state},
        supermq={"http_allowlist": ["127.0.0.1"]},
        ops={"listen": ""},
    )  # fmt: skip


def _config(tmp_path: Path, stream: str, unique: str, url: str, interval_ms: int) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "r.toml").write_text(RULE.format(url=url))
    config = tmp_path / "reactor.toml"
    config.write_text(f"""source = "redis"
[redis]
url = "{REDIS_URL}"
streams = ["{stream}"]
group = "g"
consumer = "c1"
start_id = "0"
dlq_stream = "gk{unique}.dlq"
[worker]
block_ms = 50
grace_s = 0.5
[events]
families = ["gk{unique}"]
[rules]
dir = "{rules}"
reload_interval_s = 0
[state]
path = "{tmp_path / "state.sqlite3"}"
commit_interval_ms = {interval_ms}
[supermq]
http_allowlist = ["127.0.0.1"]
[ops]
listen = ""
[log]
level = "WARNING"
""")
    return config


async def test_checkpoints_of_the_shared_file_are_a_thread_s_not_the_committing_connection_s(
    tmp_path: Path,
) -> None:
    """A WAL checkpoint syncs the file: the committing connections (state store, audit trail)
    run none on the event loop; the thread does, so the log is copied into the file all the same."""
    path = tmp_path / "s.sqlite3"
    store = SQLiteStateStore(path, 3600)
    audit = SQLiteAudit(path)
    try:
        for db in (store._db, audit._db):
            assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        size = path.stat().st_size
        for n in range(2000):
            await store.record(f"s/{n}-0", "r", "a", {"n": n, "pad": "x" * 200})
        await store.flush()
        async with asyncio.timeout(5):
            while path.stat().st_size <= size:  # the pages reach the file: the thread checkpointed
                await asyncio.sleep(0.05)
    finally:
        await store.close()
        await audit.close()
    assert len(_committed(path)) == 2000


class _Refusing(MemoryStateStore):
    """Records, but every commit fails (a full disk); the real SQLite store's case is in
    test_commit_failures.py."""

    flushes = 0

    async def flush(self) -> None:
        self.flushes += 1
        raise StateStoreError("state store: committing completed steps: database or disk is full")


async def test_a_commit_that_fails_is_logged_and_the_batch_acked_all_the_same(tmp_path: Path) -> None:
    """The ack is what keeps a finished event from running again: withholding it over the
    commit would run the event again on the next start (README, "Delivery contract")."""
    async with _hook() as hook:
        hook.release.set()
        settings = _settings(tmp_path, "gf.bootstrap", hook.url).model_copy(update={"source": "memory"})
        state = _Refusing()
        source = MemorySource(
            [("gf.bootstrap", {"operation": "config.update", "thing_id": f"d{n}"}) for n in range(5)]
        )
        reactor = Reactor.build(settings, source, get_logger("test"), state=state)
        with capture_logs() as logs:
            await asyncio.wait_for(reactor.run(asyncio.Event()), 20)
    assert len(source.acked) == 5
    assert hook.count("second") == 5
    assert state.flushes >= 1
    failed = [entry for entry in logs if entry["event"] == "state.commit_failed"]
    assert failed, logs
    assert "disk is full" in failed[0]["error"]
