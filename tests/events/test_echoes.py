"""The loop guard's bookkeeping: expected echoes of the reactor's own calls."""

from __future__ import annotations

import time
from typing import Any

import pytest

from reactor.events.echoes import Echoes, is_read


def test_reads_are_told_apart() -> None:
    assert all(
        map(
            is_read,
            [
                "config.list",
                "config.view",
                "thing.list_by_group",
                "thing.view_perms",
                "user.identify",
                "policy.authorize",
            ],
        )
    )
    assert not any(map(is_read, ["config.create", "config.update", "thing.bootstrap", "policy.add"]))


def test_an_expected_echo_is_taken_once_and_only_with_the_values_the_call_set() -> None:
    echoes = Echoes()
    echoes.expect("config.update", "t1", fields={"content": '{"a": 1}'})
    assert not echoes.take("config.update", "t2", {"content": {"a": 1}})  # another device
    assert not echoes.take("config.update", "t1", {"content": {"a": 2}})  # an operator's change
    assert not echoes.take("config.update", "t1", {})  # an event without the value
    assert echoes.take("config.update", "t1", {"content": {"a": 1}})  # decoded as events are
    assert not echoes.take("config.update", "t1", {"content": {"a": 1}})  # once
    assert len(echoes) == 0


def test_channel_lists_match_in_any_order_and_counts_add_up() -> None:
    echoes = Echoes()
    echoes.expect("thing.update_connections", "t", fields={"channels": ["b", "a"]})
    assert echoes.take("thing.update_connections", "t", {"channels": ["a", "b"]})
    echoes.expect("policy.add", "t", count=2)
    assert echoes.take("policy.add", "t", {})
    assert echoes.take("policy.add", "t", {})
    assert not echoes.take("policy.add", "t", {})


def test_withdrawn_and_expired_expectations_take_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    echoes = Echoes(ttl_s=5)
    echoes.expect("thing.change_state", "t", fields={"state": 1})
    echoes.withdraw("thing.change_state", "t", fields={"state": 1})
    assert not echoes.take("thing.change_state", "t", {"state": 1})
    echoes.withdraw("thing.change_state", "t", count=0)  # nothing to withdraw: no error
    echoes.expect("thing.change_state", "t", fields={"state": 1})
    later = time.monotonic_ns() + 6 * 10**9
    monkeypatch.setattr(time, "monotonic_ns", lambda: later)
    assert not echoes.take("thing.change_state", "t", {"state": 1})
    assert len(echoes) == 0


def test_memory_is_bounded_by_capacity() -> None:
    echoes = Echoes(capacity=100)
    for i in range(1_000):
        echoes.expect("config.list", f"t{i}")
    assert len(echoes) == 100
    assert echoes.take("config.list", "t999", {})
    assert not echoes.take("config.list", "t0", {})


def test_withdraw_takes_back_only_that_calls_expectation() -> None:
    echoes = Echoes()
    echoes.expect("config.update", "t", fields={"content": "a"})
    echoes.expect("config.update", "t", fields={"content": "b"})
    echoes.withdraw("config.update", "t", fields={"content": "a"})  # the call that wrote "a" failed
    assert not echoes.take("config.update", "t", {"content": "a"})
    assert echoes.take("config.update", "t", {"content": "b"})


def test_one_device_holds_a_bounded_number_of_expectations() -> None:
    echoes = Echoes(per_key=8)
    for _ in range(100_000):
        echoes.expect("config.list", "t")
    taken = 0
    while echoes.take("config.list", "t", {}):
        taken += 1
    assert taken == 8


async def test_shared_echoes_reach_another_process_once(redis_client: Any, unique: str) -> None:
    import redis.asyncio as aioredis

    from reactor.delivery.echo_board import SHARED, RedisEchoBoard
    from reactor.delivery.executor import Executor
    from reactor.events.decode import Decoder
    from tests.conftest import REDIS_URL

    async def take_any(echoes: Echoes, operation: str, device: str, fields: dict[str, Any]) -> bool:
        """What the executor asks of every event (Executor._own), for an event like this one."""
        entry = {"operation": operation, "thing_id": device, **{k: str(v) for k, v in fields.items()}}
        event = Decoder().decode(entry, source="redis", stream="mainflux.bootstrap", entry_id="1-0")
        return await Executor._own(echoes, event)

    def process() -> Echoes:
        return Echoes(board=RedisEchoBoard(aioredis.Redis.from_url(REDIS_URL)), shared=SHARED)

    sweeper, daemon = process(), process()
    device = f"t-{unique}"
    try:
        sweeper.expect("thing.bootstrap", device, fields={"success": True})
        await sweeper.share("thing.bootstrap", device)
        assert await take_any(daemon, "thing.bootstrap", device, {"success": True})  # the sweep's read
        assert not await take_any(daemon, "thing.bootstrap", device, {"success": True})  # a device's own
        await sweeper.share("thing.bootstrap", device)
        await sweeper.unshare("thing.bootstrap", device)  # the read was refused: nothing published
        assert not await take_any(daemon, "thing.bootstrap", device, {"success": True})
        daemon.expect("config.update", device)
        await daemon.share("config.update", device)  # not a shared operation: stays in the process
        assert not await take_any(sweeper, "config.update", device, {})
    finally:
        await sweeper.close()
        await daemon.close()
