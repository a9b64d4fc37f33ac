"""The settler: finished events are settled together, dead-letter records and acks in one call to
the source, every ``settle_interval_ms`` (or as soon as a batch is full); then counted, observed
(logs, metrics) and handed to the sinks (the audit trail), whatever the observers did. Nothing is
acked before this, nor before the state store was asked to make the batch's completed steps
durable (``before_ack``); a commit that fails there (a full disk) is logged as
``state.commit_failed`` and the batch acked all the same: the records stay pending for the next
commit, and until one succeeds a crash repeats those steps on redelivery."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from reactor.backoff import StoppedError
from reactor.delivery.outcome import InFlight, Item, Outcome
from reactor.errors import StateStoreError
from reactor.settings import WorkerSettings
from reactor.sources.base import Source

#: Told of each settled outcome; one with a ``flush()`` method is flushed after each batch.
Observer = Callable[[Outcome], None]
Sink = Callable[[Sequence[Outcome]], Awaitable[None]]
#: A source call retried with backoff through an outage (``StoppedError`` once the event is set).
#: How often, at most, a log output that cannot be written is said on stderr.
_BROKEN_LOG_NOTE_S = 60.0
Retrying = Callable[[Callable[[], Awaitable[None]], str, asyncio.Event], Awaitable[None]]


@dataclass(slots=True)
class Counters:
    """What the worker has done since it started."""

    events: int = 0
    matched: int = 0
    actions_ok: int = 0
    actions_failed: int = 0
    actions_skipped: int = 0
    dead_lettered: int = 0


class Settler:
    """Settles what the worker finished; frees its room in flight once settled."""

    def __init__(
        self,
        source: Source,
        settings: WorkerSettings,
        batch_size: int,
        in_flight: InFlight,
        room: asyncio.Event,
        retrying: Retrying,
        logger: structlog.typing.FilteringBoundLogger,
        observers: Sequence[Observer] = (),
        sinks: Sequence[Sink] = (),
        before_ack: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._before_ack = before_ack
        self._source = source
        self._settings = settings
        self._batch_size = batch_size
        self._in_flight = in_flight
        self._room = room
        self._retrying = retrying
        self.logger = logger
        self._observers = list(observers)
        self._sinks = list(sinks)
        self._finished: list[Item] = []
        self._settle_wakeup = asyncio.Event()
        self._settling_since: float | None = None
        self._stop = asyncio.Event()  # the daemon's, once running; never set for process()
        self.counters = Counters()
        self._log_broken_at = -_BROKEN_LOG_NOTE_S

    def start(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def wake(self) -> None:
        self._settle_wakeup.set()

    def finish(self, item: Item) -> None:
        item.finished_at = time.monotonic()
        item.processed.set()
        self._finished.append(item)
        if len(self._finished) >= self._batch_size or self._settings.settle_interval_ms == 0:
            self._settle_wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        interval = self._settings.settle_interval_ms / 1000
        while True:
            self._settle_wakeup.clear()
            if self._finished:
                await self.flush(stop)
            if stop.is_set():
                if self._finished:
                    await self.flush(stop)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settle_wakeup.wait(), interval or None)

    def unsettled_s(self) -> float:
        """How long the oldest processed event has waited to be settled (0 when none waits)."""
        oldest = self._settling_since
        if oldest is None and self._finished:
            oldest = self._finished[0].finished_at
        return 0.0 if oldest is None else time.monotonic() - oldest

    async def flush(self, stop: asyncio.Event | None) -> None:
        items, self._finished = self._finished, []
        if not items:
            return
        self._settling_since = items[0].finished_at
        try:
            settled = await self._settle(items, stop or self._stop)
        finally:
            self._settling_since = None
        if not settled:
            return
        try:
            for item in items:
                self._in_flight.pop((item.outcome.delivery.stream, item.outcome.delivery.entry_id), None)
                self._count(item.outcome)
                self._observe(item.outcome)
            self._flush_observers()
            self._room.set()
        finally:  # the audit trail of an acked batch, whatever the observers did
            await self._sink([i.outcome for i in items])

    async def _sink(self, outcomes: list[Outcome]) -> None:
        for sink in self._sinks:
            try:
                await sink(outcomes)
            except Exception as exc:
                self._log(
                    "error",
                    "worker.sink_failed",
                    sink=getattr(sink, "__qualname__", str(sink)),
                    error=str(exc),
                )

    def _log(self, level: str, event: str, **fields: Any) -> None:
        """A line of the settler's own: a log output that cannot be written (a full disk, a closed
        pipe) never stops it; said on stderr at most once per ``_BROKEN_LOG_NOTE_S``."""
        try:
            getattr(self.logger, level)(event, **fields)
        except Exception as exc:
            now = time.monotonic()
            if now - self._log_broken_at < _BROKEN_LOG_NOTE_S:
                return
            self._log_broken_at = now
            with contextlib.suppress(Exception):
                print(
                    f"reactor: log output failed, lines are lost: {type(exc).__name__}: {exc}",
                    file=sys.stderr,
                )

    async def _settle(self, items: list[Item], stop: asyncio.Event) -> bool:
        """Dead-letter records and acks, through an outage; False when given up on stop."""
        done = [i.outcome.delivery for i in items]
        dead = [i.outcome.dead_letter for i in items if i.outcome.dead_letter is not None]
        if self._before_ack is not None:
            try:
                await self._before_ack()
            except StateStoreError as exc:  # the ack itself keeps a finished event from running again
                self._log("error", "state.commit_failed", error=str(exc), entries=len(done))
        try:
            await self._retrying(lambda: self._source.settle(done, dead), "source.settle_failed", stop)
        except StoppedError as exc:
            self._log("error", "source.settle_abandoned", error=str(exc.__cause__), entries=len(done))
            for d in done:  # left pending: redelivered on the next start
                self._in_flight.pop((d.stream, d.entry_id), None)
            return False
        return True

    def _observe(self, outcome: Outcome) -> None:
        """Tell the observers (logs, metrics); one that fails is logged, never kills the settler."""
        for observer in self._observers:
            try:
                observer(outcome)
            except Exception as exc:
                self._log(
                    "error",
                    "worker.observer_failed",
                    observer=getattr(observer, "__qualname__", type(observer).__name__),
                    stream=outcome.delivery.stream,
                    entry_id=outcome.delivery.entry_id,
                    error=f"{type(exc).__name__}: {exc}",
                )

    def _flush_observers(self) -> None:
        """An observer that writes a batch's lines together (``flush``) writes them now."""
        for observer in self._observers:
            flush = getattr(observer, "flush", None)
            if flush is None:
                continue
            try:
                flush()
            except Exception as exc:
                self._log(
                    "error",
                    "worker.observer_failed",
                    observer=getattr(observer, "__qualname__", type(observer).__name__),
                    error=f"{type(exc).__name__}: {exc}",
                )

    def _count(self, outcome: Outcome) -> None:
        c = self.counters
        c.events += 1
        c.matched += len(outcome.rules)
        for rule in outcome.rules:
            for step in rule.steps:
                if step.skipped:
                    c.actions_skipped += 1
                elif step.ok:
                    c.actions_ok += 1
                else:
                    c.actions_failed += 1
        c.dead_lettered += outcome.dead_letter is not None
