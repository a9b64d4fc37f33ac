"""``reactor status`` on NATS JetStream and RabbitMQ: the consumer's backlog and the dead letters,
read from the real servers."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reactor.ops.status import gather, print_status
from reactor.settings import load_settings
from reactor.sources.deadletter import DeadLetter
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
