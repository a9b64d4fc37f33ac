"""``reactor status`` on NATS JetStream and RabbitMQ: the consumer's backlog and the dead letters,
read from the real servers."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reactor.app import Reactor
from reactor.ops.logging import get_logger
from reactor.ops.status import gather, print_status
from reactor.settings import load_settings
from reactor.sources.base import DeadLetter
from tests.rules.helpers import registry
from tests.sources.backends import BACKENDS, Backend


@pytest.fixture(params=["nats", "rabbitmq"])
async def backend(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[Backend]:
    chosen = BACKENDS[request.param](unique)
    await chosen.setup()
    yield chosen
    await chosen.teardown()


async def test_status_shows_the_backlog_and_the_dead_letters(backend: Backend, tmp_path: Path) -> None:
    for seq in range(3):
        await backend.publish(
            backend.stream(), {"operation": "config.update", "thing_id": "t", "seq": str(seq)}
        )
    source = backend.source()
    await source.start()
    record = DeadLetter(backend.stream(), "9", "action_failed", "HTTP 503", {"x": "1"}, rule="push")
    await source.settle([], [record])
    await source.close()

    settings = load_settings(None, source=backend.name, rules={"dir": tmp_path, "reload_interval_s": 0})
    settings = settings.model_copy(update={backend.name: backend.settings})  # type: ignore[attr-defined]
    status = await gather(settings, None, registry(), None)

    (stream,) = status.streams
    assert stream.exists
    assert stream.lag == 3  # published, not yet delivered to the reactor
    assert status.dead_letters == 1
    assert [(e["where"], e["rule"], e["error"]) for e in status.last_errors] == [
        ("dead-letter", "push", "HTTP 503")
    ]
    out = io.StringIO()
    print_status(status, out)
    assert "dead-letter records: 1" in out.getvalue()


async def test_the_daemons_gauges_come_from_the_store(backend: Backend, tmp_path: Path) -> None:
    """lag, pending and the dead-letter length on /metrics: empty on NATS and RabbitMQ before."""
    source = backend.source()
    await source.start()
    for seq in range(2):
        await backend.publish(
            backend.stream(), {"operation": "config.update", "thing_id": "t", "seq": str(seq)}
        )
    await source.settle([], [DeadLetter(backend.stream(), "9", "action_failed", "HTTP 503", {})])
    settings = load_settings(
        None,
        source=backend.name,
        rules={"dir": tmp_path, "reload_interval_s": 0},
        state={"backend": "sqlite", "path": tmp_path / "state.sqlite3"},
        ops={"backlog_interval_s": 0.05},
    )
    settings = settings.model_copy(update={backend.name: backend.settings})  # type: ignore[attr-defined]
    reactor = Reactor.build(settings, source, get_logger("test"))
    stop = asyncio.Event()
    watching = asyncio.create_task(reactor.watch_backlog(stop))
    try:
        async with asyncio.timeout(10):
            while not re.search(
                r"^reactor_consumer_lag\{.*\} 2\.0$", text := reactor.metrics.render().decode(), re.M
            ):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await watching
        await source.close()
    assert re.search(r"^reactor_consumer_pending\{.*\} 0\.0$", text, re.M)
    assert re.search(r"^reactor_dead_letter_stream_length 1\.0$", text, re.M)
