"""Nothing dies unnoticed, every wait honours stop: a dead settler or lane stops the daemon with a
non-zero exit and a log line; a dead rules watcher is restarted; /readyz reports work that waits
too long to be settled; a SIGTERM during an outage (or while starting) stops promptly and cleanly."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog

import reactor.app
from reactor.app import Reactor, run_daemon
from reactor.delivery.state import MemoryStateStore, RedisStateStore
from reactor.errors import SourceError, StateStoreError
from reactor.ops.logging import configure_logging, get_logger
from reactor.settings import NatsSettings, Settings, load_settings
from reactor.sources.base import DeadLetter, Delivery
from reactor.sources.memory import MemorySource
from reactor.sources.nats_jetstream import NatsJetStreamSource
from reactor.sources.rabbitmq import RabbitMQSource
from reactor.supervise import TaskFailedError
from tests.conftest import REPO
from tests.servers import free_port
from tests.sources.backends import RabbitBackend, event_json

RULE = """
[[rule]]
name = "note"
on = ["config.update"]
[[rule.actions]]
type = "log"
message = "seen {{ event.thing_id }}"
"""

EVENT = {"operation": "config.update", "thing_id": "t1"}


def _settings(tmp_path: Path, **worker: Any) -> Settings:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "r.toml").write_text(RULE)
    return load_settings(
        None,
        source="memory",
        rules={"dir": rules, "reload_interval_s": 0},
        ops={"listen": ""},
        worker={"settle_interval_ms": 1, **worker},
        supermq={"profile": "things", "bootstrap_url": f"http://127.0.0.1:{free_port()}"},
    )


class _BrokenSettle(MemorySource):
    """settle raises what no source declared recoverable (as aiormq's ChannelInvalidStateError did)."""

    async def settle(self, done: Sequence[Delivery], dead: Sequence[DeadLetter]) -> None:
        raise RuntimeError("channel closed under the settler")


class _RefusedSettle(MemorySource):
    """The event store answers but refuses every ack."""

    async def settle(self, done: Sequence[Delivery], dead: Sequence[DeadLetter]) -> None:
        raise SourceError("NOPERM acks refused")


class _OrderCheckDown(MemorySource):
    """The event store goes down between the read and the cross-process order check."""

    async def foreign_pending(self, deliveries: Sequence[Delivery]) -> dict[str, list[str]]:
        raise SourceError("Connection refused")


class _HeldElsewhere(MemorySource):
    """Another consumer holds an earlier entry of the device (EVENT's), and never settles it."""

    async def foreign_pending(self, deliveries: Sequence[Delivery]) -> dict[str, list[str]]:
        return {d.stream: ["0-1"] for d in deliveries}

    async def read_entries(self, stream: str, entry_ids: Sequence[str]) -> dict[str, Delivery | None]:
        return {i: Delivery(stream, i, EVENT) for i in entry_ids}

    async def still_pending(self, stream: str, entry_ids: set[str]) -> set[str]:
        return set(entry_ids)


class _StateDown(MemoryStateStore):
    async def completed(self, event_key: str) -> Any:
        raise StateStoreError("state store: Connection refused")

    async def record(self, event_key: str, rule: str, action_id: str, result: Any) -> None:
        raise StateStoreError("state store: Connection refused")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("INFO", "json", stream=buffer)
    yield buffer
    structlog.reset_defaults()


def _events(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]


async def test_a_dead_settler_stops_the_worker_with_the_failure(tmp_path: Path) -> None:
    source = _BrokenSettle(finite=False)
    source.add("s.bootstrap", EVENT)
    built = Reactor.build(_settings(tmp_path), source, get_logger("test"))
    with pytest.raises(TaskFailedError, match="settler") as failed:
        async with asyncio.timeout(5):
            await built.run(asyncio.Event())
    assert isinstance(failed.value.error, RuntimeError)
    assert source.acked == []  # nothing acked: it comes back on the next start


class _BrokenUpkeep(MemorySource):
    async def maintain(self) -> list[Delivery]:
        raise KeyError("consumers")  # a reply of an unexpected shape


async def test_a_dead_upkeep_stops_the_worker_with_the_failure(tmp_path: Path) -> None:
    built = Reactor.build(_settings(tmp_path), _BrokenUpkeep(finite=False), get_logger("test"))
    with pytest.raises(TaskFailedError, match="upkeep"):
        async with asyncio.timeout(5):
            await built.run(asyncio.Event())


async def test_a_dead_lane_stops_the_worker_with_the_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = MemorySource(finite=False)
    source.add("s.bootstrap", EVENT)
    built = Reactor.build(_settings(tmp_path), source, get_logger("test"))

    def broken_finish(item: object) -> None:
        raise AttributeError("a bug in the worker")

    monkeypatch.setattr(built.worker.settler, "finish", broken_finish)
    with pytest.raises(TaskFailedError, match="lane"):
        async with asyncio.timeout(5):
            await built.run(asyncio.Event())
    assert source.acked == []


class _BrokenStillPending(_HeldElsewhere):
    async def still_pending(self, stream: str, entry_ids: set[str]) -> set[str]:
        raise TypeError("reply of an unexpected shape")


async def test_a_dead_blocker_poller_stops_the_worker_with_the_failure(tmp_path: Path) -> None:
    source = _BrokenStillPending(finite=False)
    source.add("s.bootstrap", EVENT)
    built = Reactor.build(_settings(tmp_path), source, get_logger("test"))
    with pytest.raises(TaskFailedError, match="blocker-poller"):
        async with asyncio.timeout(5):
            await built.run(asyncio.Event())


async def test_the_daemon_exits_non_zero_with_one_clear_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: io.StringIO
) -> None:
    source = _BrokenSettle(finite=False)
    source.add("s.bootstrap", EVENT)
    monkeypatch.setattr(reactor.app, "build_source", lambda _: source)
    async with asyncio.timeout(5):
        code = await run_daemon(_settings(tmp_path), get_logger())
    assert code == 1
    events = _events(log_lines)
    failed = [e for e in events if e["event"] == "reactor.task_failed"]
    assert failed, events
    assert failed[0]["task"] == "settler"
    assert failed[0]["error"] == "RuntimeError: channel closed under the settler"
    stopped = [e for e in events if e["event"] == "reactor.stopped"]
    assert stopped[0]["failed_task"] == "settler"
    assert stopped[0]["level"] == "error"


async def test_a_rules_watcher_that_dies_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: io.StringIO
) -> None:
    settings = _settings(tmp_path).model_copy(
        update={"rules": _settings(tmp_path).rules.model_copy(update={"reload_interval_s": 0.05})}
    )
    built = Reactor.build(settings, MemorySource(finite=False), get_logger())
    calls: list[int] = []

    async def watch(stop: asyncio.Event, interval_s: float) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RecursionError("maximum recursion depth exceeded")  # as a hostile rule file did
        await stop.wait()

    monkeypatch.setattr(built.holder, "watch", watch)
    stop = asyncio.Event()
    task = asyncio.create_task(built.run(stop))
    async with asyncio.timeout(5):
        while len(calls) < 2:
            await asyncio.sleep(0.05)
    stop.set()
    await task
    names = [(e["event"], e.get("task")) for e in _events(log_lines)]
    assert ("reactor.task_failed", "rules-watcher") in names
    assert ("reactor.task_restarted", "rules-watcher") in names


async def test_readyz_reports_work_that_waits_too_long_to_be_settled(tmp_path: Path) -> None:
    source = _RefusedSettle(finite=False)
    settings = _settings(tmp_path, max_unsettled_s=0.3)
    settings = settings.model_copy(
        update={"ops": settings.ops.model_copy(update={"backlog_interval_s": 0.05})}
    )
    built = Reactor.build(settings, source, get_logger("test"))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(built.run(stop)), asyncio.create_task(built.watch_backlog(stop))]
    await asyncio.sleep(0.1)
    assert (await built.ready())["settling"] is True  # nothing waits
    source.add("s.bootstrap", EVENT)
    async with asyncio.timeout(5):
        while (await built.ready())["settling"]:
            await asyncio.sleep(0.05)
    assert (await built.ready())["source"] is True  # the store answers; it just acks nothing
    await asyncio.sleep(0.1)
    gauge = [
        line for line in built.metrics.render().decode().splitlines() if line.startswith("reactor_unsettled")
    ]
    assert float(gauge[0].split()[1]) > 0.3
    stop.set()
    async with asyncio.timeout(5):
        await asyncio.gather(*tasks)


async def test_sigterm_while_the_order_check_waits_out_an_outage_stops_promptly(tmp_path: Path) -> None:
    source = _OrderCheckDown(finite=False)
    source.add("s.bootstrap", EVENT)
    built = Reactor.build(_settings(tmp_path), source, get_logger("test"))
    stop = asyncio.Event()
    task = asyncio.create_task(built.run(stop))
    await asyncio.sleep(0.5)  # retrying the order check
    stop.set()
    async with asyncio.timeout(3):
        await task
    assert source.acked == []


async def test_sigterm_while_the_state_store_is_down_stops_before_the_grace_period(tmp_path: Path) -> None:
    source = MemorySource(finite=False)
    for n in range(1, 4):  # redeliveries (their steps are looked up), of one device: in one lane
        source.add_delivery(Delivery("s.bootstrap", f"{n}-0", {**EVENT, "seq": str(n)}, deliveries=2))
    built = Reactor.build(_settings(tmp_path, grace_s=30), source, get_logger("test"), state=_StateDown())
    stop = asyncio.Event()
    task = asyncio.create_task(built.run(stop))
    await asyncio.sleep(0.5)
    stop.set()
    async with asyncio.timeout(3):  # not the 30 s grace period
        await task
    assert source.acked == []
    assert [d.entry_id for d in await source.read(10, 0)] == ["1-0", "2-0", "3-0"]  # released, in order


async def test_sigterm_while_an_event_waits_for_another_consumer_stops_before_the_grace_period(
    tmp_path: Path,
) -> None:
    source = _HeldElsewhere(finite=False)
    source.add("s.bootstrap", EVENT)
    built = Reactor.build(_settings(tmp_path, grace_s=30), source, get_logger("test"))
    stop = asyncio.Event()
    task = asyncio.create_task(built.run(stop))
    await asyncio.sleep(0.3)
    stop.set()
    async with asyncio.timeout(3):
        await task
    assert source.acked == []
    assert [d.entry_id for d in await source.read(10, 0)] == ["1-0"]  # released


async def test_sigterm_while_nats_cannot_be_reached_at_start_stops_promptly(tmp_path: Path) -> None:
    """nats-py's first connect retries for ever; the start gives up on stop all the same."""
    settings = _settings(tmp_path)
    source = NatsJetStreamSource(NatsSettings(url=f"nats://127.0.0.1:{free_port()}"))
    built = Reactor.build(settings, source, get_logger("test"))
    stop = asyncio.Event()
    task = asyncio.create_task(built.run(stop))
    await asyncio.sleep(1.0)
    stop.set()
    async with asyncio.timeout(3):
        await task


@pytest.mark.parametrize("after_s", [0.5, 1.0, 1.5])  # importing, loading rules, starting
async def test_sigterm_while_starting_exits_zero_with_a_log_line(tmp_path: Path, after_s: float) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(RULE)
    config = tmp_path / "c.toml"
    config.write_text(
        f'source = "memory"\n[rules]\ndir = "{rules}"\n[ops]\nlisten = ""\n'
        f'[supermq]\nprofile = "things"\nbootstrap_url = "http://127.0.0.1:{free_port()}"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reactor",
        "--config",
        str(config),
        "run",
        cwd=REPO,
        stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(after_s)
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "reactor.stopped" in err.decode()


async def _read_some(source: Any) -> list[Delivery]:
    async with asyncio.timeout(10):
        while not (batch := await source.read(10, 200)):
            pass
    return list(batch)


async def test_rabbitmq_acks_on_a_closed_channel_are_no_crash_and_the_message_comes_back(unique: str) -> None:
    """aiormq raises ChannelInvalidStateError (a RuntimeError) for an ack on a closed channel; the
    broker has requeued the message already, so settle goes on and the message is redelivered."""
    backend = RabbitBackend(unique)
    await backend.setup()
    try:
        source = backend.source()
        assert isinstance(source, RabbitMQSource)
        await source.start()
        await backend.publish(backend.stream(), event_json(1))
        batch = await _read_some(source)
        await source._channel.close()  # the channel is gone under the consumer
        await source.settle(batch, [])
        await source.close()
        again = backend.source()
        await again.start()
        redelivered = await _read_some(again)
        assert [d.deliveries for d in redelivered] == [2]
        await again.settle(redelivered, [])
        await again.close()
    finally:
        await backend.teardown()


async def test_sigterm_while_the_redis_state_store_retries_stops_before_the_grace_period(
    tmp_path: Path,
) -> None:
    """RedisStateStore retries ~45 s itself before the worker's wait: that gives up on stop too."""
    source = MemorySource(finite=False)
    source.add_delivery(Delivery("s.bootstrap", "1-0", EVENT, deliveries=2))
    down = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    state = RedisStateStore(down, 60.0)
    built = Reactor.build(_settings(tmp_path, grace_s=30), source, get_logger("test"), state=state)
    stop = asyncio.Event()
    task = asyncio.create_task(built.run(stop))
    await asyncio.sleep(1.0)  # retrying inside the store
    stop.set()
    async with asyncio.timeout(5):
        await task
    assert source.acked == []


class _BrokenLog:
    """A logger whose every line fails, as structlog's does when its stream was closed."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        def fail(*args: Any, **kwargs: Any) -> None:
            raise ValueError("I/O operation on closed file.")

        return fail


async def test_a_failure_that_cannot_be_logged_still_stops_the_daemon() -> None:
    """The supervisor's own log line failing must not swallow the failure (before: the task
    ended with the logging error, stop was never set and the daemon acked nothing, alive)."""
    from reactor.supervise import Supervisor

    stop = asyncio.Event()
    supervisor = Supervisor(stop, _BrokenLog())  # type: ignore[arg-type]

    async def dies() -> None:
        raise RuntimeError("settling broke")

    supervisor.spawn("settler", dies)
    async with asyncio.timeout(5):
        await stop.wait()
    with pytest.raises(TaskFailedError, match="settler failed: RuntimeError: settling broke"):
        supervisor.raise_failure()
