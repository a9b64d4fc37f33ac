"""Per-device lanes: events about one device run one at a time, in stream order; devices run
concurrently, so one slow or failing device never holds up the others.

A lane is a heap ordered by entry id. Lanes with work wait in a ready queue; a pool of at most
``concurrency`` runner tasks takes a lane, runs its first item, and puts the lane back if it has
more. A lane is either queued, held by one runner, or held by a waiter, never two at once: that
is the per-device order. Runners live as long as there is ready work, so the steady state
creates no task per event and parks none on a semaphore (bench/README.md, "Profiling history").

An item may carry *blockers*: earlier entries of the same device that another consumer holds.
Its lane is handed to a waiter task (the rare case) so the runner stays free; the item runs
when they are settled, unless one of them arrives in this lane (reclaimed from a dead
consumer), in which case that one runs first.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Order = tuple[int, ...]
Entry = tuple[Order, int, T]


@dataclass
class _Lane(Generic[T]):
    heap: list[tuple[Order, int, T]] = field(default_factory=list)
    held: bool = False  # queued, run or waited on: not to be queued again


class Lanes(Generic[T]):
    """Runs ``run(item)`` for submitted items: one lane per key, at most ``concurrency`` at once."""

    def __init__(
        self,
        run: Callable[[T], Awaitable[None]],
        wait_blockers: Callable[[T, Callable[[], bool]], Awaitable[bool]] | None = None,
        blocked: Callable[[T], bool] | None = None,
        concurrency: int = 64,
    ) -> None:
        self._run = run
        self._wait_blockers = wait_blockers
        self._blocked = blocked if wait_blockers is not None else None
        self._limit = concurrency
        self._lanes: dict[Hashable, _Lane[T]] = {}
        self._ready: deque[Hashable] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runners = 0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = itertools.count()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return sum(len(lane.heap) for lane in self._lanes.values()) + self._runners

    def busy(self, key: Hashable) -> bool:
        """Whether lane ``key`` has an item queued, running or waiting on its blockers."""
        return key in self._lanes

    def submit(self, key: Hashable, order: Order, item: T) -> None:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
            self._idle.clear()
        heapq.heappush(lane.heap, (order, next(self._seq), item))
        if not lane.held:
            lane.held = True
            self._ready.append(key)
            self._add_runner()

    def _add_runner(self) -> None:
        if self._runners < self._limit and not self._closed:
            self._runners += 1
            self._spawn(self._runner())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():  # asyncio.get_running_loop() costs a getpid()
            loop = self._loop = asyncio.get_running_loop()
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _runner(self) -> None:
        try:
            while self._ready and not self._closed:
                key = self._ready.popleft()
                lane = self._lanes[key]
                entry = heapq.heappop(lane.heap)
                if self._blocked is not None and self._blocked(entry[2]):
                    self._spawn(self._hold(key, lane, entry))
                    continue
                try:
                    await self._run(entry[2])
                finally:
                    self._release(key, lane)  # this runner goes on with the queue
        finally:
            self._runners -= 1
            if self._ready and not self._closed:  # it died with work left: another takes over
                self._add_runner()

    async def _hold(self, key: Hashable, lane: _Lane[T], entry: Entry[T]) -> None:
        """Wait out an item's blockers off the runner pool, then give the lane back in order."""
        order = entry[0]
        assert self._wait_blockers is not None
        try:
            await self._wait_blockers(entry[2], lambda: bool(lane.heap) and lane.heap[0][0] < order)
            heapq.heappush(lane.heap, entry)  # runs now (or after an earlier entry that arrived)
        finally:
            self._release(key, lane)
            if self._ready:
                self._add_runner()

    def _release(self, key: Hashable, lane: _Lane[T]) -> None:
        """After an item: the lane goes back to the queue if it has more, else away."""
        if lane.heap:
            self._ready.append(key)
            return
        lane.held = False
        del self._lanes[key]
        if not self._lanes:
            self._idle.set()

    async def join(self) -> None:
        """Wait until every lane is empty."""
        await self._idle.wait()

    def cancel(self) -> None:
        """Cancel every runner and waiter (their items stay unsettled: redelivered later)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
