"""``reactor dlq`` on RabbitMQ: the dead-letter queue's records listed, shown and purged through the
command (it refused RabbitMQ before), on a real broker."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator

import pytest

from reactor.sources.base import DeadLetter
from tests.conftest import reactor_cli
from tests.sources.backends import RabbitBackend


@pytest.fixture
async def rabbit(unique: str) -> AsyncIterator[RabbitBackend]:
    backend = RabbitBackend(unique)
    await backend.setup()
    yield backend
    await backend.teardown()


def cli(backend: RabbitBackend, *args: str) -> subprocess.CompletedProcess[str]:
    s = backend.settings
    env = {
        "REACTOR_SOURCE": "rabbitmq",
        "REACTOR_RABBITMQ__URL": s.url,
        "REACTOR_RABBITMQ__QUEUE": s.queue,
        "REACTOR_RABBITMQ__EXCHANGE": s.exchange,
        "REACTOR_RABBITMQ__DLQ_QUEUE": s.dlq_queue,
    }
    return reactor_cli("dlq", *args, env=env)


async def test_dlq_lists_shows_and_purges_rabbitmq_records(rabbit: RabbitBackend) -> None:
    source = rabbit.source()
    await source.start()
    await source.settle(
        [], [DeadLetter("supermq.bootstrap", "body-1", "action_failed", "HTTP 503", {}, rule="push")]
    )
    await source.close()

    listed = cli(rabbit, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (record,) = json.loads(listed.stdout)
    assert (record["rule"], record["error"]) == ("push", "HTTP 503")
    shown = cli(rabbit, "show", record["id"])
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["entry_id"] == "body-1"
    assert cli(rabbit, "list", "--json").stdout == listed.stdout  # listing took nothing away
    purged = cli(rabbit, "purge", "--all")
    assert purged.returncode == 0, purged.stderr
    assert json.loads(cli(rabbit, "list", "--json").stdout) == []
