"""An in-memory source: a finite list of entries, with its own dead-letter list. For the demo and tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reactor.sources.base import (
    DeadLetter,
    DeadLetterStore,
    Delivery,
    Record,
    Source,
    StoreStatus,
    StreamStatus,
)


class MemorySource(Source):
    """Entries given up front (or added with ``add``); ``acked`` and ``dead_letters`` record outcomes."""

    name = "memory"

    def __init__(
        self, entries: Iterable[tuple[str, Mapping[str, Any] | bytes]] = (), *, finite: bool = True
    ) -> None:
        self._pending: list[Delivery] = []
        self._next = 0
        self._seq = 0
        self._finite = finite
        self._wakeup = asyncio.Event()
        self.acked: list[Delivery] = []
        self.dead_letters: list[DeadLetter] = []
        self._held: dict[str, Delivery] = {}  # read, not settled, by key
        for stream, payload in entries:
            self.add(stream, payload)

    def add(self, stream: str, payload: Mapping[str, Any] | bytes) -> str:
        """Queue one entry; returns its entry id."""
        self._seq += 1
        entry_id = f"{self._seq}-0"
        self._pending.append(Delivery(stream, entry_id, payload))
        self._wakeup.set()
        return entry_id

    def add_delivery(self, delivery: Delivery) -> None:
        """Queue an entry as it is (its stream, entry id and delivery count), for replay."""
        self._pending.append(delivery)
        self._wakeup.set()

    async def read(self, max_count: int, block_ms: int) -> list[Delivery]:
        if not self._remaining and not self._finite:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), block_ms / 1000)
            except TimeoutError:
                return []
        batch = self._pending[self._next : self._next + max_count]
        self._next += len(batch)
        self._held.update((d.key, d) for d in batch)
        if self._next == len(self._pending):
            self._pending, self._next = [], 0
        return batch

    async def settle(self, done: Sequence[Delivery], dead: Sequence[DeadLetter]) -> None:
        self.dead_letters.extend(dead)
        self.acked.extend(done)
        for delivery in done:
            self._held.pop(delivery.key, None)

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Unsettled entries go back to the front, to be read again."""
        for delivery in deliveries:
            self._held.pop(delivery.key, None)
        self._pending[self._next : self._next] = [
            Delivery(d.stream, d.entry_id, d.payload, d.deliveries + 1) for d in deliveries
        ]
        self._wakeup.set()

    async def status(self) -> StoreStatus:
        row = StreamStatus("memory", "memory", True, self._remaining, len(self._held), None, 1)
        return StoreStatus([row], len(self.dead_letters))

    async def open_dead_letters(self) -> DeadLetterStore:
        return MemoryDeadLetters(self.dead_letters)

    @property
    def _remaining(self) -> int:
        return len(self._pending) - self._next

    @property
    def exhausted(self) -> bool:
        return self._finite and not self._remaining


class MemoryDeadLetters(DeadLetterStore):
    """A memory source's dead-letter list; a record's id is its place in it (from 1)."""

    where = "memory"

    def __init__(self, records: list[DeadLetter]) -> None:
        self._records = records

    async def _fetch(self, ids: Sequence[str], limit: int | None) -> list[Record]:
        every = [Record(str(n), r.to_fields()) for n, r in enumerate(self._records, 1)]
        every.reverse()
        if ids:
            return [r for r in every if r.id in ids]
        return every if limit is None else every[:limit]

    async def count(self) -> int:
        return len(self._records)

    async def delete(self, ids: Sequence[str]) -> int:
        gone = {int(i) - 1 for i in ids if i.isdigit() and 0 < int(i) <= len(self._records)}
        self._records[:] = [r for n, r in enumerate(self._records) if n not in gone]
        return len(gone)

    async def purge(self) -> int:
        count = len(self._records)
        self._records.clear()
        return count

    async def replace(self, add: Sequence[DeadLetter], remove: Sequence[str]) -> None:
        await self.delete(remove)
        self._records.extend(add)
