"""A state store that cannot be reached is a ``StateStoreError``, not an event-store failure."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from reactor.delivery.state import RedisStateStore
from reactor.errors import SourceError, StateStoreError
from tests.servers import free_port


async def test_an_unreachable_redis_state_store_raises_state_store_error() -> None:
    down = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    state = RedisStateStore(down, 60.0)
    state.stop = asyncio.Event()
    state.stop.set()  # give up at once instead of retrying through an outage
    for call in (lambda: state.completed("k"), lambda: state.record("k", "rule", "a1", {"ok": True})):
        with pytest.raises(StateStoreError, match=r"^state store: ") as raised:
            await call()
        assert not isinstance(raised.value, SourceError)  # the event store did not fail
    await down.aclose()
