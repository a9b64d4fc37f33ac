"""A gate for running one thing alone: every item takes a shared pass (``running``); ``alone``
waits until none is running and keeps new ones waiting until it ends.

The worker runs an entry past ``max_deliveries`` alone, so that a process that dies meanwhile
was killed by that entry and no other. The shared pass costs a flag check and a counter on the
per-event path; only the rare ``alone`` waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Solo:
    def __init__(self) -> None:
        self._open = asyncio.Event()  # cleared while something runs alone
        self._open.set()
        self._running = 0
        self._none_running = asyncio.Event()
        self._lock = asyncio.Lock()  # one alone at a time

    @property
    def open(self) -> bool:
        """Whether nothing runs alone (nor waits to): a pass would be given at once."""
        return self._open.is_set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """A shared pass: waits while something runs alone."""
        if not self._open.is_set():
            await self._open.wait()
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            if not self._running:
                self._none_running.set()

    @contextlib.asynccontextmanager
    async def alone(self) -> AsyncIterator[None]:
        """Nothing else runs inside: new passes wait, the running ones are waited for."""
        async with self._lock:
            self._open.clear()
            try:
                while self._running:
                    self._none_running.clear()
                    await self._none_running.wait()
                yield
            finally:
                self._open.set()
