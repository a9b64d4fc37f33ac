"""Rule gates: ``throttle`` (one firing per key per window) and ``debounce_s`` (fire only after
the key has been quiet for the window), with their state beside the state store.

A gate admits an event when no other event holds its key. The holder is the event's delivery
key, so a redelivered event that was admitted before is admitted again (its steps still run or
are skipped as recorded). In memory the gates are per process and bounded (``capacity`` keys,
the oldest dropped first); in Redis (``state.backend = "redis"``) they hold across every process
of the consumer group, one ``SET ... NX PX`` (throttle) or ``SET ... PX GET`` (debounce) a check.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from reactor.errors import SourceError


class Gates(ABC):
    @abstractmethod
    async def admit(self, gate: str, window_s: float, *, sliding: bool, holder: str) -> bool:
        """Whether the event ``holder`` may pass gate ``gate`` (rule and key) now; ``sliding``
        (debounce): every event, admitted or not, restarts the window."""

    async def close(self) -> None:  # noqa: B027 - optional
        pass


class MemoryGates(Gates):
    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._held: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def admit(self, gate: str, window_s: float, *, sliding: bool, holder: str) -> bool:
        now = time.monotonic()
        held = self._held.get(gate)
        free = held is None or held[1] <= now or held[0] == holder
        if free or sliding:
            owner = holder if free else held[0]  # type: ignore[index]
            self._held[gate] = (owner if not sliding else holder, now + window_s)
            self._held.move_to_end(gate)
            while len(self._held) > self._capacity:
                self._held.popitem(last=False)
        return free


class RedisGates(Gates):
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def admit(self, gate: str, window_s: float, *, sliding: bool, holder: str) -> bool:
        key, ms = f"{self._prefix}:{gate}", max(1, int(window_s * 1000))
        try:
            if sliding:
                old = await self._client.set(key, holder, px=ms, get=True)
                return old is None or _text(old) == holder
            if await self._client.set(key, holder, px=ms, nx=True):
                return True
            return _text(await self._client.get(key)) == holder
        except RedisError as exc:
            raise SourceError(f"rule gates: Redis failed ({type(exc).__name__}: {exc})") from exc

    async def close(self) -> None:
        await self._client.aclose()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
