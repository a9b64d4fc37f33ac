"""The loop guard across processes: expected echoes shared through Redis.

A ``reactor certs sweep`` or ``certs inspect --thing`` reads each certificate the way the device
does, and Mainflux publishes ``thing.bootstrap`` for every such read. A daemon running beside it
(or another process of the same group) would take those for devices bootstrapping. So the
expectations of the operations in ``SHARED`` are also written to Redis (a counter per operation
and device, expiring with the in-process window), and a daemon that misses one in its own memory
looks there. Only those operations pay the round trip; it is a rare event.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

#: Echoes a process other than the one that made the call may consume, and rules act on.
SHARED = frozenset({"thing.bootstrap"})

# Decrement a positive counter; 1 when there was one to take.
_TAKE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) return 1 end
return 0
"""


class RedisEchoBoard:
    """Counters ``reactor:echo:<operation>:<device>`` in the reactor's Redis."""

    def __init__(self, client: aioredis.Redis, ttl_s: float = 300.0) -> None:
        self._client = client
        self._ttl_ms = int(ttl_s * 1000)
        self._take = client.register_script(_TAKE)

    @staticmethod
    def _key(operation: str, device: str) -> str:
        return f"reactor:echo:{operation}:{device}"

    async def post(self, operation: str, device: str) -> None:
        """Another process may consume this echo. Best effort: Redis down loses only the note."""
        key = self._key(operation, device)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.pexpire(key, self._ttl_ms)
                await pipe.execute()
        except RedisError:
            return

    async def take(self, operation: str, device: str) -> bool:
        try:
            return bool(await self._take(keys=[self._key(operation, device)]))
        except RedisError:
            return False

    async def close(self) -> None:
        await self._client.aclose()
