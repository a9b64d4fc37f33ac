"""The consume loop: read → decode → per-device lanes → rules and actions → settle (dead-letter, ack).

Reading, processing and settling overlap: a batch is read while earlier events still run, up to
``worker.max_in_flight`` events read but not settled. Events about one device run in stream order
in their lane; lanes run concurrently, actions bounded by ``worker.concurrency``. Finished events
are settled together every ``settle_interval_ms``: their dead-letter records and acks in one call
to the source. Nothing is acked before its outcome is settled. On stop, reading ends, in-flight
work gets ``grace_s`` to finish and be settled; what is still running then is left unacked and
comes back on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import structlog

from reactor.backoff import Backoff, StoppedError
from reactor.delivery.executor import Executor, RuleOutcome, dead_letter_for
from reactor.delivery.lanes import Lanes
from reactor.errors import DecodeError, SourceError, StateStoreError, SuspendedError
from reactor.events import catalogue
from reactor.events.decode import Decoder
from reactor.events.model import Event, raw_view
from reactor.secrets import Sealer
from reactor.settings import WorkerSettings
from reactor.sources.base import Delivery, Source, entry_order
from reactor.sources.deadletter import DeadLetter
from reactor.supervise import Supervisor

_BLOCKER_POLL_S = 0.02
T = TypeVar("T")
OnError = Callable[[BaseException, float], Awaitable[None]]


@dataclass(slots=True)
class Outcome:
    """The settled result of one delivery."""

    delivery: Delivery
    event: Event | None
    rules: list[RuleOutcome] = field(default_factory=list)
    dead_letter: DeadLetter | None = None


class Pause(Protocol):
    """What pauses consuming while it is ``open`` (SuperMQ's login breaker)."""

    @property
    def open(self) -> bool: ...

    @property
    def reason(self) -> str: ...

    async def resume(self, stop: asyncio.Event) -> None:
        """Return once closed; ``StoppedError`` on ``stop``."""


Observer = Callable[[Outcome], None]
Sink = Callable[[Sequence[Outcome]], Awaitable[None]]


@dataclass(slots=True)
class Counters:
    """What the worker has done since it started."""

    events: int = 0
    matched: int = 0
    actions_ok: int = 0
    actions_failed: int = 0
    actions_skipped: int = 0
    dead_lettered: int = 0


@dataclass(slots=True)
class _Item:
    outcome: Outcome
    blockers: set[str] = field(default_factory=set)
    submitted: bool = False
    processed: asyncio.Event = field(default_factory=asyncio.Event)
    lane: Hashable = None
    finished_at: float = 0.0  # time.monotonic() when processed, waiting to be settled


class Worker:
    """Consumes one source until stopped (or until a finite source is exhausted)."""

    def __init__(
        self,
        source: Source,
        decoder: Decoder,
        executor: Executor,
        settings: WorkerSettings,
        *,
        batch_size: int = 100,
        block_ms: int = 1000,
        logger: structlog.typing.FilteringBoundLogger,
        observers: Sequence[Observer] = (),
        sinks: Sequence[Sink] = (),
        pause: Pause | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self._source = source
        self._sealer = sealer
        self._pause = pause
        self._decoder = decoder
        self._executor = executor
        self._settings = settings
        self._batch_size = batch_size
        self._block_ms = block_ms
        self.logger = logger
        self._observers = list(observers)
        self._sinks = list(sinks)
        self._lanes: Lanes[_Item] = Lanes(
            self._run_item, self._wait_blockers, lambda item: bool(item.blockers), settings.concurrency
        )
        self._in_flight: dict[tuple[str, str], _Item] = {}
        self._finished: list[_Item] = []
        self._room = asyncio.Event()
        self._room.set()
        self._settle_wakeup = asyncio.Event()
        self._blocked: dict[str, set[str]] = {}
        self._settled: dict[str, set[str]] = {}
        self._poll_round = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._recoverable: tuple[type[Exception], ...] = (SourceError, *source.recoverable)
        self._stop = asyncio.Event()  # the daemon's, once running; never set for process()
        self._tasks = Supervisor(self._stop, logger)
        self._abandoned: set[Hashable] = set()  # lanes given up on stop (their items stay unsettled)
        self._settling_since: float | None = None
        self.counters = Counters()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # ---- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Read and process until ``stop`` is set (or a finite source ends); then drain and settle.

        The settler, the upkeep, the blocker poller and every lane are supervised: one that dies
        of an unexpected exception stops the worker, which then raises ``TaskFailedError``."""
        self._stop = stop
        self._tasks = tasks = Supervisor(stop, self.logger)
        settle_stop = asyncio.Event()
        tasks.spawn("settler", lambda: self._settle_loop(settle_stop))
        upkeep = tasks.spawn("upkeep", lambda: self._upkeep(stop))  # it holds our liveness lease
        try:
            await self._read_loop(stop)
        except StoppedError:
            pass
        except Exception as exc:
            tasks.fail("reader", exc)
        finally:
            upkeep.cancel()
            await self._drain()
            settle_stop.set()
            self._settle_wakeup.set()
            await tasks.join()
        tasks.raise_failure()

    def _warn(self, event: str, **fields: object) -> OnError:
        """A retry's report: one warning line per failed attempt, with the coming delay."""

        async def warn(exc: BaseException, retry_in_s: float) -> None:
            await self.logger.awarning(event, error=str(exc), retry_in_s=retry_in_s, **fields)

        return warn

    async def _read_loop(self, stop: asyncio.Event) -> None:
        backoff = Backoff(stop)
        while not stop.is_set():
            if self._pause is not None and self._pause.open:
                await self._paused(self._pause, stop)
                continue
            room = self._settings.max_in_flight - self.in_flight
            if room <= 0:
                self._room.clear()
                await _wait_either(self._room, stop)
                continue
            count = min(self._batch_size, room)
            batch = await backoff.retry(
                functools.partial(self._source.read, count, self._block_ms),
                self._recoverable,
                self._warn("source.read_failed"),
            )
            if batch:
                await self.dispatch(batch)
            elif self._source.exhausted:
                if not self.in_flight:
                    return
                self._room.clear()  # a finite source's end: wait for what is in flight to settle
                await _wait_either(self._room, stop)

    async def _paused(self, pause: Pause, stop: asyncio.Event) -> None:
        """Read nothing until ``pause`` closes: the events in hand wait, pending, not dead-lettered."""
        await self.logger.aerror("worker.paused", reason=pause.reason, in_flight=self.in_flight)
        await pause.resume(stop)
        await self.logger.ainfo("worker.resumed")

    async def _upkeep(self, stop: asyncio.Event) -> None:
        """Reclaim what dead consumers left, keep long-running entries ours, on the source's schedule."""
        while not stop.is_set():
            try:
                reclaimed = await self._source.maintain()
            except self._recoverable as exc:
                await self.logger.awarning("source.maintain_failed", error=str(exc))
                reclaimed = []
            for level, event, fields in self._source.notices():
                await (self.logger.awarning if level == "warning" else self.logger.ainfo)(event, **fields)
            fresh = [d for d in reclaimed if (d.stream, d.entry_id) not in self._in_flight]
            if fresh:
                await self.logger.ainfo("source.reclaimed", entries=len(fresh))
                try:
                    await self.dispatch(fresh)
                except StoppedError:
                    return
            await _sleep_or_stop(stop, self._source.maintain_interval_s)

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(self._settings.grace_s):
                await self._lanes.join()
        except TimeoutError:
            await self.logger.awarning("worker.grace_expired", unfinished=len(self._lanes))
            self._lanes.cancel()
        unfinished = [i.outcome.delivery for i in self._in_flight.values() if not i.processed.is_set()]
        if unfinished:
            with contextlib.suppress(*self._recoverable):
                await self._source.release(unfinished)

    # ---- dispatch -----------------------------------------------------------------------------

    async def dispatch(self, batch: Sequence[Delivery]) -> list[_Item]:
        """Decode a batch and hand every event to its device's lane (``StoppedError``: stopped
        while the order check waited out an outage; the batch stays unsettled)."""
        items = []
        for delivery in batch:
            key = (delivery.stream, delivery.entry_id)
            if key in self._in_flight:
                continue  # already here (a re-read of our own pending entry)
            item = _Item(self._decode(delivery))
            self._in_flight[key] = item
            items.append(item)
        decoded = [i for i in items if i.outcome.dead_letter is None]
        if decoded:
            deliveries = [i.outcome.delivery for i in decoded]
            blockers = await self._retrying(
                lambda: self._source.earlier_pending(deliveries, self._device_of),
                "source.order_check_failed",
                self._stop,
            )
            for item in decoded:
                item.blockers = blockers.get(item.outcome.delivery.entry_id, set())
        for item in items:
            if item.outcome.dead_letter is not None:
                self._finish(item)
                continue
            event = item.outcome.event
            assert event is not None
            item.lane = _lane(event)
            item.submitted = True
            self._lanes.submit(item.lane, _order(event), item)
        return items

    async def _retrying(self, call: Callable[[], Awaitable[T]], failed: str, stop: asyncio.Event) -> T:
        """A source call, retried with backoff through an outage; ``StoppedError`` once ``stop`` is set."""
        return await Backoff(stop).retry(call, self._recoverable, self._warn(failed))

    async def process(self, batch: Sequence[Delivery]) -> list[Outcome]:
        """Process one batch to its settled outcomes (for tests, benchmarks and replay)."""
        items = await self.dispatch(batch)
        for item in items:
            await item.processed.wait()
        await self._flush(None)
        return [item.outcome for item in items]

    def _decode(self, delivery: Delivery) -> Outcome:
        """The delivery's event, or its dead-letter record (raw content kept): poison when it was
        delivered more than ``max_deliveries`` times (checked first: it is not decoded again),
        malformed when it does not decode, internal_error when the decoder has a bug."""
        if delivery.deliveries > self._settings.max_deliveries:
            reason = f"delivered {delivery.deliveries} times (max_deliveries {self._settings.max_deliveries})"
            return self._dead(delivery, "poison", reason)
        try:
            event = self._decoder.decode(
                delivery.payload, source=self._source.name, stream=delivery.stream, entry_id=delivery.entry_id
            )
        except DecodeError as exc:
            return self._dead(delivery, "malformed", exc.detail)
        except Exception as exc:  # the decoder's bug, not the entry's: kept, never fatal
            return self._dead(delivery, "internal_error", f"decoding: {type(exc).__name__}: {exc}")
        return Outcome(delivery, event)

    def _device_of(self, delivery: Delivery) -> str | None:
        known = self._in_flight.get((delivery.stream, delivery.entry_id))
        if known is not None and known.outcome.event is not None:
            return known.outcome.event.device  # decoded already: no second decode
        try:
            event = self._decoder.decode(
                delivery.payload, source=self._source.name, stream=delivery.stream, entry_id=delivery.entry_id
            )
        except DecodeError:
            return None
        return event.device

    async def _wait_blockers(self, item: _Item, earlier_arrived: Callable[[], bool]) -> bool:
        """Wait until another consumer settled this device's earlier entries; False to yield the lane.

        Waiting items do not ask the source themselves: one poller asks about every blocker of a
        stream at once per round (thousands of items may wait after a consumer died).
        """
        stream = item.outcome.delivery.stream
        while item.blockers:
            if self._stop.is_set():  # no point waiting: it stays unsettled, and so does its lane
                self._abandoned.add(item.lane)
                item.blockers = set()
                return False
            # A blocker that is now ours (reclaimed) and in its lane: the lane's order rules from here.
            item.blockers = {b for b in item.blockers if not self._submitted_here(stream, b)}
            if earlier_arrived():
                return False
            if not item.blockers:
                break
            self._blocked.setdefault(stream, set()).update(item.blockers)
            self._ensure_poller()
            await self._poll_round.wait()
            item.blockers -= self._settled.get(stream, set())  # only what a round asked about and found gone
        return not earlier_arrived()

    def _submitted_here(self, stream: str, entry_id: str) -> bool:
        item = self._in_flight.get((stream, entry_id))
        return item is not None and item.submitted

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = self._tasks.spawn("blocker-poller", self._poll_blockers)

    async def _poll_blockers(self) -> None:
        """One round every _BLOCKER_POLL_S: which blockers are still pending, per stream.

        However it ends (a bug here stops the worker), the waiters are woken to look again: none
        waits for a round that will not come."""
        try:
            while self._blocked:
                await asyncio.sleep(_BLOCKER_POLL_S)
                wanted, self._blocked = self._blocked, {}
                self._settled = {
                    stream: await self._settled_of(stream, ids) for stream, ids in wanted.items()
                }
                self._end_round()
        except BaseException:
            self._settled = {}
            self._end_round()
            raise

    async def _settled_of(self, stream: str, ids: set[str]) -> set[str]:
        try:
            return ids - await self._source.still_pending(stream, ids)
        except self._recoverable:
            return set()  # unknown is not settled: keep waiting

    def _end_round(self) -> None:
        done, self._poll_round = self._poll_round, asyncio.Event()
        done.set()

    # ---- processing ---------------------------------------------------------------------------

    async def _run_item(self, item: _Item) -> None:
        """A lane's step. An exception escaping it is a bug here: the worker stops with it (the
        event stays unsettled, its lane is given up)."""
        try:
            await self._process(item)
        except Exception as exc:
            self._abandoned.add(item.lane)
            self._tasks.fail("lane", exc)

    async def _process(self, item: _Item) -> None:
        """One event through the rules, to be settled; left unsettled when stopped during a state
        store outage (and so is every later item of its lane: the device's order holds)."""
        if item.lane in self._abandoned:
            return
        outcome = item.outcome
        event = outcome.event
        assert event is not None
        try:
            outcome.rules = await self._execute(event, self._source.maybe_acted_on(outcome.delivery))
            outcome.dead_letter = dead_letter_for(event, outcome.rules, self._sealer)
        except StoppedError:
            self._abandoned.add(item.lane)
            return
        except Exception as exc:  # a bug in the reactor: the event is kept, with the reason
            outcome.dead_letter = DeadLetter(
                event.stream,
                event.entry_id,
                "internal_error",
                f"{type(exc).__name__}: {exc}",
                event.raw,
                attempts=outcome.delivery.deliveries,
                secrets=event.secrets,
                sealed=self._sealer.seal_json(event.raw) if self._sealer is not None else "",
            )
        self._finish(item)

    async def _execute(self, event: Event, redelivered: bool) -> list[RuleOutcome]:
        try:
            return await self._executor.execute(event, redelivered=redelivered)
        except StateStoreError as exc:  # the state store, not the event: wait for it, in order
            return await self._execute_once_state_is_back(event, exc)
        except SuspendedError:  # SuperMQ does not take the login: wait for it (StoppedError on stop)
            if self._pause is None:
                raise
            await self._pause.resume(self._stop)
            return await self._execute(event, True)

    async def _execute_once_state_is_back(self, event: Event, first: StateStoreError) -> list[RuleOutcome]:
        """Again until the state store answers (``StoppedError`` on stop); what was recorded is
        skipped on the next try."""
        backoff = Backoff(self._stop)
        warn = self._warn("state.unavailable", entry_id=event.entry_id)
        await warn(first, backoff.delay_s)
        await backoff.wait()
        return await backoff.retry(
            lambda: self._executor.execute(event, redelivered=True), (StateStoreError,), warn
        )

    def _finish(self, item: _Item) -> None:
        item.finished_at = time.monotonic()
        item.processed.set()
        self._finished.append(item)
        if len(self._finished) >= self._batch_size or self._settings.settle_interval_ms == 0:
            self._settle_wakeup.set()

    # ---- settling -----------------------------------------------------------------------------

    async def _settle_loop(self, stop: asyncio.Event) -> None:
        interval = self._settings.settle_interval_ms / 1000
        while True:
            self._settle_wakeup.clear()
            if self._finished:
                await self._flush(stop)
            if stop.is_set():
                if self._finished:
                    await self._flush(stop)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settle_wakeup.wait(), interval or None)

    def unsettled_s(self) -> float:
        """How long the oldest processed event has waited to be settled (0 when none waits)."""
        oldest = self._settling_since
        if oldest is None and self._finished:
            oldest = self._finished[0].finished_at
        return 0.0 if oldest is None else time.monotonic() - oldest

    async def _flush(self, stop: asyncio.Event | None) -> None:
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
        for item in items:
            self._in_flight.pop((item.outcome.delivery.stream, item.outcome.delivery.entry_id), None)
            self._count(item.outcome)
            self._observe(item.outcome)
        self._room.set()
        for sink in self._sinks:
            try:
                await sink([i.outcome for i in items])
            except Exception as exc:
                await self.logger.aerror(
                    "worker.sink_failed", sink=getattr(sink, "__qualname__", str(sink)), error=str(exc)
                )

    async def _settle(self, items: list[_Item], stop: asyncio.Event) -> bool:
        """Dead-letter records and acks, through an outage; False when given up on stop."""
        done = [i.outcome.delivery for i in items]
        dead = [i.outcome.dead_letter for i in items if i.outcome.dead_letter is not None]
        try:
            await self._retrying(lambda: self._source.settle(done, dead), "source.settle_failed", stop)
        except StoppedError as exc:
            await self.logger.aerror("source.settle_abandoned", error=str(exc.__cause__), entries=len(done))
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
                self.logger.error(
                    "worker.observer_failed",
                    observer=getattr(observer, "__qualname__", type(observer).__name__),
                    stream=outcome.delivery.stream,
                    entry_id=outcome.delivery.entry_id,
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

    def _dead(self, delivery: Delivery, reason: str, error: str) -> Outcome:
        """An outcome that is only a dead-letter record: the delivery as received (masked, and
        sealed for replay), and why."""
        raw = raw_view(delivery.payload)
        record = DeadLetter(
            delivery.stream,
            delivery.entry_id,
            reason,
            error,
            raw,
            attempts=delivery.deliveries,
            secrets=self._decoder.raw_secrets(delivery.payload, delivery.stream),
            sealed=self._sealer.seal_json(raw) if self._sealer is not None else "",
        )
        return Outcome(delivery, None, dead_letter=record)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return


async def _wait_either(a: asyncio.Event, b: asyncio.Event) -> None:
    waits = [asyncio.create_task(a.wait()), asyncio.create_task(b.wait())]
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()


def _lane(event: Event) -> Hashable:
    """The lane of ``event``: its stream's and device's; the per-operation streams of one
    service (SuperMQ HEAD) share one lane per device, so that a device's events stay in order
    across them (README, "Delivery contract")."""
    if not event.device:
        return (event.stream, f"#{event.entry_id}")
    service = catalogue.per_operation_service(event.stream, event.family, event.service)
    return (event.stream, event.device) if service is None else (("service", service), event.device)


def _order(event: Event) -> tuple[int, int, int]:
    """Where ``event`` runs in its lane: by entry id; within one millisecond of a Redis entry id
    (the ids of two streams do not compare further), by the event's ``occurred_at``."""
    ms, seq = entry_order(event.entry_id)
    return (ms, event.occurred_at_ns if "-" in event.entry_id else 0, seq)
