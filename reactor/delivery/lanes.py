"""Per-device lanes: events about one device run one at a time, in stream order; devices run
concurrently, so one slow or failing device never holds up the others.

A lane is a heap ordered by entry id, drained by one task that exists only while the lane has
work. An item may carry *blockers*: earlier entries of the same device that another consumer
holds; it waits until they are settled, unless one of them arrives in this lane (reclaimed from a
dead consumer), in which case that one runs first.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
Order = tuple[int, int]


@dataclass
class _Lane(Generic[T]):
    heap: list[tuple[Order, int, T]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class Lanes(Generic[T]):
    """Runs ``run(item)`` for submitted items: one lane per key, lanes concurrent."""

    def __init__(
        self,
        run: Callable[[T], Awaitable[None]],
        wait_blockers: Callable[[T, Callable[[], bool]], Awaitable[bool]] | None = None,
    ) -> None:
        self._run = run
        self._wait_blockers = wait_blockers
        self._lanes: dict[Hashable, _Lane[T]] = {}
        self._seq = itertools.count()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return sum(len(lane.heap) + (lane.task is not None) for lane in self._lanes.values())

    def submit(self, key: Hashable, order: Order, item: T) -> None:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        heapq.heappush(lane.heap, (order, next(self._seq), item))
        if lane.task is None:
            self._idle.clear()
            lane.task = asyncio.create_task(self._drain(key, lane))

    async def _drain(self, key: Hashable, lane: _Lane[T]) -> None:
        try:
            while lane.heap:
                order, seq, item = heapq.heappop(lane.heap)
                if self._wait_blockers is not None:
                    earlier_arrived = lambda o=order: bool(lane.heap) and lane.heap[0][0] < o  # noqa: E731
                    if not await self._wait_blockers(item, earlier_arrived):
                        heapq.heappush(lane.heap, (order, seq, item))
                        continue
                await self._run(item)
        finally:
            lane.task = None
            if not lane.heap:
                self._lanes.pop(key, None)
            if not self._lanes:
                self._idle.set()

    async def join(self) -> None:
        """Wait until every lane is empty."""
        await self._idle.wait()

    def cancel(self) -> None:
        """Cancel every running lane (their items stay unsettled: redelivered later)."""
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
