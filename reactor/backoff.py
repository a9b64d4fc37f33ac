"""One way to wait out something that is down (the event store, the state store): doubling
delays up to a cap, and every wait, and every call waited on, cut short by ``stop``.

Every loop that retries through an outage uses ``Backoff``: a SIGTERM during an outage stops
the daemon within moments, never after the outage ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

INITIAL_S = 0.1
MAX_S = 5.0


class StoppedError(Exception):
    """A wait or a call given up because ``stop`` was set."""


class Backoff:
    """Delays of ``initial_s``, doubling up to ``max_s``; ``reset`` after a success."""

    def __init__(
        self, stop: asyncio.Event | None = None, *, initial_s: float = INITIAL_S, max_s: float = MAX_S
    ) -> None:
        self.stop = stop
        self._initial = initial_s
        self._max = max_s
        self.delay_s = initial_s

    @property
    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def reset(self) -> None:
        self.delay_s = self._initial

    async def wait(self) -> None:
        """Sleep the current delay (less if ``stop`` is set meanwhile), then double it.

        Raises ``StoppedError`` when ``stop`` is set, before or during the sleep."""
        delay, self.delay_s = self.delay_s, min(self.delay_s * 2, self._max)
        if self.stop is None:
            await asyncio.sleep(delay)
            return
        if not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
        if self.stop.is_set():
            raise StoppedError

    async def retry(
        self,
        fn: Callable[[], Awaitable[T]],
        errors: tuple[type[BaseException], ...],
        on_error: Callable[[BaseException, float], Awaitable[None]],
    ) -> T:
        """``fn()`` until it returns, waiting after each of ``errors`` (told to ``on_error`` with
        the coming delay); ``StoppedError`` once ``stop`` is set."""
        while True:
            try:
                result = await fn()
            except errors as exc:
                if self.stopped:
                    raise StoppedError from exc
                await on_error(exc, self.delay_s)
                await self.wait()
                continue
            self.reset()
            return result


async def until_stopped(coro: Coroutine[Any, Any, T], stop: asyncio.Event) -> T:
    """Await ``coro`` unless ``stop`` is set first: then it is cancelled and ``StoppedError`` raised.

    For calls that may not return by themselves while a server is down (nats-py's first connect
    retries forever)."""
    task = asyncio.ensure_future(coro)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopping.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):  # what it raises on the way out is moot
        await task
    raise StoppedError
