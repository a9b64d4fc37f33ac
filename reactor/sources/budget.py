"""A byte budget for messages read and not yet settled: memory bounded by configuration.

A source counts each message it hands out (``hold``) until it is settled or released
(``release``); ``fits`` says how many more may be read at the largest message size seen lately
(decaying 10% a read; the first read takes one message, to see a size, unless the source names
a size to start from), and ``room`` waits up
to a read's block time for a settle when none fits. One message larger than the budget is read
alone, when nothing else is held.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterable

_MIN_ENTRY_BYTES = 64.0


class ByteBudget:
    """What held messages take, against ``limit`` bytes."""

    def __init__(self, limit: int, entry_bytes: float = 0.0) -> None:
        self.limit = limit
        self.held_bytes = 0
        self._sizes: dict[Hashable, int] = {}
        self._entry_bytes = entry_bytes  # the largest message seen lately, decaying (0: none yet)
        self._settled = asyncio.Event()

    def fits(self, max_count: int) -> int:
        """How many messages of the size seen lately fit in what is left (0: none now)."""
        if not self._entry_bytes:
            return 0 if self.held_bytes else min(max_count, 1)
        room = self.limit - self.held_bytes
        fits = min(max_count, max(int(room // self._entry_bytes), 0))
        return fits or (0 if self.held_bytes else 1)  # one larger than the budget: alone

    def __len__(self) -> int:
        """How many messages are held."""
        return len(self._sizes)

    async def room(self, max_count: int, block_ms: int) -> int:
        """``fits``, after waiting up to ``block_ms`` for a settle when nothing fits now."""
        count = self.fits(max_count)
        if not count:
            self._settled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), max(block_ms, 10) / 1000)
            count = self.fits(max_count)
        return count

    def hold(self, sizes: Iterable[tuple[Hashable, int]]) -> None:
        """Count one read's messages until released (one held again counts once)."""
        largest = 0
        for key, size in sizes:
            largest = max(largest, size)
            if key not in self._sizes:
                self._sizes[key] = size
                self.held_bytes += size
        self._entry_bytes = max(float(largest), 0.9 * self._entry_bytes, _MIN_ENTRY_BYTES)

    def release(self, keys: Iterable[Hashable]) -> None:
        for key in keys:
            self.held_bytes -= self._sizes.pop(key, 0)
        self._settled.set()
