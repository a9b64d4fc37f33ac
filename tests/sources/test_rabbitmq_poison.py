"""RabbitMQ: on a quorum queue the broker counts a message's deliveries, so one whose process
died holding it max_deliveries times is dead-lettered as poison before it runs again; on a
classic queue a publisher's x-delivery-count header is not believed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import aio_pika
import pytest

from reactor.app import Reactor
from reactor.delivery.executor import begin_trial
from reactor.delivery.state import MemoryStateStore
from reactor.events.protowire import wrap_payload
from reactor.ops.logging import get_logger
from reactor.settings import RabbitSettings, load_settings
from reactor.sources.rabbitmq import RabbitMQSource
from tests.conftest import missing_server
from tests.sources.backends import AMQP_URL, _reachable

EVENT = {"operation": "config.create", "thing_id": "t-poison", "occurred_at": 1}


@pytest.fixture
async def channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    if not _reachable(5672):
        missing_server("RabbitMQ on 5672")
    conn = await aio_pika.connect(AMQP_URL)
    yield await conn.channel()
    await conn.close()


async def _setup(
    channel: aio_pika.abc.AbstractChannel, unique: str, queue_type: Literal["classic", "quorum"]
) -> RabbitSettings:
    settings = RabbitSettings(
        url=AMQP_URL,
        exchange=f"events{unique}",
        queue=f"reactor{unique}",
        dlq_queue=f"dlq{unique}",
        queue_type=queue_type,
    )
    await channel.declare_exchange(settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    source = RabbitMQSource(settings)
    await source.start()  # declares and binds the queue
    await source.close()
    return settings


async def _publish(channel: aio_pika.abc.AbstractChannel, settings: RabbitSettings, **headers: Any) -> None:
    exchange = await channel.get_exchange(settings.exchange)
    body = wrap_payload(json.dumps(EVENT).encode())
    await exchange.publish(aio_pika.Message(body, headers=headers), routing_key="events.supermq.bootstrap")


async def _teardown(channel: aio_pika.abc.AbstractChannel, settings: RabbitSettings) -> None:
    for name in (settings.queue, settings.dlq_queue):
        await channel.queue_delete(name)
    await channel.exchange_delete(settings.exchange)


async def _deliver_and_die(settings: RabbitSettings) -> int:
    """Read the message and close without settling it (the process died): its delivery number."""
    source = RabbitMQSource(settings)
    await source.start()
    try:
        (delivery,) = await source.read(10, 5000)
    finally:
        await source.close()
    return delivery.deliveries


async def test_a_quorum_queue_counts_deliveries_and_poison_is_set_aside_before_it_runs(
    channel: aio_pika.abc.AbstractChannel, tmp_path: Path, unique: str
) -> None:
    settings = await _setup(channel, unique, "quorum")
    try:
        await _publish(channel, settings)
        assert [await _deliver_and_die(settings) for _ in range(3)] == [1, 2, 3]
        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "r.toml").write_text(
            '[[rule]]\nname = "r"\non = ["config.create"]\n[[rule.actions]]\ntype = "noop"\n'
        )
        config = load_settings(
            None, rules={"dir": rules, "reload_interval_s": 0}, worker={"max_deliveries": 3}
        )
        reactor = Reactor.build(
            config, RabbitMQSource(settings), get_logger("test"), state=MemoryStateStore()
        )
        await reactor.source.start()
        try:
            (held,) = await reactor.source.read(10, 5000)
            await begin_trial(reactor.state, held.key)  # as if it had run alone, and the process died
            (outcome,) = await reactor.worker.process([held])
        finally:
            await reactor.source.close()
            await reactor.client.aclose()
        assert outcome.dead_letter is not None
        assert outcome.dead_letter.reason == "poison"
        assert "delivered 4 times (max_deliveries 3)" in outcome.dead_letter.error
        assert outcome.event is None  # never decoded, no rule ran
    finally:
        await _teardown(channel, settings)


async def test_a_classic_queue_does_not_believe_a_published_delivery_count(
    channel: aio_pika.abc.AbstractChannel, unique: str
) -> None:
    settings = await _setup(channel, unique, "classic")
    try:
        await _publish(channel, settings, **{"x-delivery-count": 1000})
        assert [await _deliver_and_die(settings) for _ in range(2)] == [1, 2]
    finally:
        await _teardown(channel, settings)
