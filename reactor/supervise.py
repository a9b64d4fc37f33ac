"""The daemon's tasks, supervised: none of them dies unnoticed.

A task that ends with an exception nobody expected (a bug, a library error no source declared
recoverable) is logged as ``reactor.task_failed`` with the task's name, the error and its stack.
Then either the task is restarted after a backoff (``restart=True``: the rules watcher, the
gauges, the sweeps, whose next round starts afresh), or ``stop`` is set and the failure is
raised by ``raise_failure`` (the reader, the settler, the upkeep, a lane: the daemon stops with
a non-zero exit, and what it had not settled comes back on the next start).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from reactor.backoff import Backoff, StoppedError

Run = Callable[[], Coroutine[Any, Any, None]]

RESTART_INITIAL_S = 1.0
RESTART_MAX_S = 60.0


class TaskFailedError(Exception):
    """A supervised task ended with an unexpected exception (``error``)."""

    def __init__(self, task: str, error: BaseException) -> None:
        self.task = task
        self.error = error
        super().__init__(f"task {task} failed: {describe(error)}")


def describe(error: BaseException) -> str:
    """``Type: message``, as one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _log_total(logger: structlog.typing.FilteringBoundLogger, task: str, error: BaseException) -> None:
    """``reactor.task_failed`` with the stack; one plain line on stderr if logging itself fails."""
    try:
        logger.error("reactor.task_failed", task=task, error=describe(error), exc_info=error)
    except Exception as failed:  # the last resort: nothing may escape from here
        with contextlib.suppress(Exception):
            print(f"reactor: task {task} failed: {describe(error)} ({describe(failed)})", file=sys.stderr)


class Supervisor:
    """Starts named tasks and watches them (see the module's docstring)."""

    def __init__(self, stop: asyncio.Event, logger: structlog.typing.FilteringBoundLogger) -> None:
        self.stop = stop
        self._log = logger
        self._tasks: set[asyncio.Task[None]] = set()
        self.failure: TaskFailedError | None = None

    def spawn(self, name: str, run: Run, *, restart: bool = False) -> asyncio.Task[None]:
        """Run ``run()`` as the task ``name``."""
        coro = self._restarting(name, run) if restart else self._guarded(name, run)
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def fail(self, task: str, error: BaseException) -> None:
        """Record that ``task`` failed (the first failure is the one raised), stop, log it.

        Recorded and stopped first: a log line that cannot be written (its stream closed) must
        not keep the daemon alive acking nothing."""
        if self.failure is None:
            self.failure = TaskFailedError(task, error)
        self.stop.set()
        _log_total(self._log, task, error)

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def join(self) -> None:
        """Wait for every task to end (they end on ``stop``); cancelled ones count as ended."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _guarded(self, name: str, run: Run) -> None:
        try:
            await run()
        except Exception as exc:
            self.fail(name, exc)

    async def _restarting(self, name: str, run: Run) -> None:
        backoff = Backoff(self.stop, initial_s=RESTART_INITIAL_S, max_s=RESTART_MAX_S)
        while not self.stop.is_set():
            try:
                await run()
                return
            except Exception as exc:
                self._log.error(
                    "reactor.task_failed",
                    task=name,
                    error=describe(exc),
                    restart_in_s=backoff.delay_s,
                    exc_info=exc,
                )
            with contextlib.suppress(StoppedError):
                await backoff.wait()
                self._log.warning("reactor.task_restarted", task=name)
