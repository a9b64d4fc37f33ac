"""The consume loop: read → decode → per-device lanes → rules and actions → settle (dead-letter, ack).

Reading, processing and settling overlap: a batch is read while earlier events still run, up to
``worker.max_in_flight`` events read but not settled. Events about one device run in stream order
in their lane; lanes run concurrently, actions bounded by ``worker.concurrency``. An entry delivered
more than ``max_deliveries`` times is run alone (nothing else runs meanwhile), marked so in the
state store first, and settled at once: if the process dies then, that entry killed it, and its
next delivery is dead-lettered as poison before it runs; the entries merely in flight at crashes
are not (without a state store, past ``max_deliveries`` is poison at once). Finished events
are settled together every ``settle_interval_ms``: their dead-letter records and acks in one call
to the source. Nothing is acked before its outcome is settled. On stop, reading ends, in-flight
work gets ``grace_s`` to finish and be settled; what is still running then is left unacked and
comes back on the next start.

The worker reads, decodes and dispatches; the cross-process order gate (``order_gate.py``) holds
an event while another consumer has its device's earlier entries, and the settler
(``settler.py``) settles, counts and observes what finished.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Protocol, TypeVar

import structlog

from reactor.backoff import Backoff, StoppedError
from reactor.delivery.executor import Executor, RuleOutcome, dead_letter_for
from reactor.delivery.lanes import Lanes
from reactor.delivery.order_gate import OrderGate
from reactor.delivery.outcome import InFlight, Item, Outcome
from reactor.delivery.settler import Observer, Settler, Sink
from reactor.delivery.solo import Solo
from reactor.errors import DecodeError, SourceError, StateStoreError, SuspendedError
from reactor.events import catalogue
from reactor.events.decode import Decoder
from reactor.events.model import Event, raw_view
from reactor.secrets import Sealer
from reactor.settings import WorkerSettings
from reactor.sources.base import DeadLetter, Delivery, Source, entry_order
from reactor.supervise import Supervisor

T = TypeVar("T")
OnError = Callable[[BaseException, float], Awaitable[None]]


class Pause(Protocol):
    """What pauses consuming while it is ``open`` (SuperMQ's login breaker)."""

    @property
    def open(self) -> bool: ...

    @property
    def reason(self) -> str: ...

    async def resume(self, stop: asyncio.Event) -> None:
        """Return once closed; ``StoppedError`` on ``stop``."""


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
        self._in_flight: InFlight = {}
        self._room = asyncio.Event()
        self._room.set()
        self._recoverable: tuple[type[Exception], ...] = (SourceError, *source.recoverable)
        self._stop = asyncio.Event()  # the daemon's, once running; never set for process()
        self._tasks = Supervisor(self._stop, logger)
        self._abandoned: set[Hashable] = set()  # lanes given up on stop (their items stay unsettled)
        self._gate = OrderGate(
            source, decoder, self._recoverable, self._in_flight, self._abandoned, self._stop, self._tasks
        )
        self.settler = Settler(
            source,
            settings,
            batch_size,
            self._in_flight,
            self._room,
            self._retrying,
            logger,
            observers,
            sinks,
            before_ack=executor.flush_state,
        )
        self.counters = self.settler.counters
        self._solo = Solo()  # an entry past max_deliveries runs alone
        self._lanes: Lanes[Item] = Lanes(
            self._run_item, self._gate.wait_blockers, lambda item: bool(item.blockers), settings.concurrency
        )

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def unsettled_s(self) -> float:
        """How long the oldest processed event has waited to be settled (0 when none waits)."""
        return self.settler.unsettled_s()

    # ---- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Read and process until ``stop`` is set (or a finite source ends); then drain and settle.

        The settler, the upkeep, the blocker poller and every lane are supervised: one that dies
        of an unexpected exception stops the worker, which then raises ``TaskFailedError``."""
        self._stop = stop
        self._tasks = tasks = Supervisor(stop, self.logger)
        self._gate.start(stop, tasks)
        self.settler.start(stop)
        settle_stop = asyncio.Event()
        tasks.spawn("settler", lambda: self.settler.run(settle_stop))
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
            self.settler.wake()
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
                if any(d.deliveries > self._settings.max_deliveries for d in fresh):
                    # runs alone take their time: not here, where the liveness lease is renewed
                    self._tasks.spawn("reclaimed", functools.partial(self._dispatch_aside, fresh))
                elif not await self._dispatch_until_stopped(fresh):
                    return
            await _sleep_or_stop(stop, self._source.maintain_interval_s)

    async def _dispatch_aside(self, batch: Sequence[Delivery]) -> None:
        await self._dispatch_until_stopped(batch)

    async def _dispatch_until_stopped(self, batch: Sequence[Delivery]) -> bool:
        """``dispatch``; False when stopped while it waited (the batch stays unsettled)."""
        try:
            await self.dispatch(batch)
        except StoppedError:
            return False
        return True

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

    async def dispatch(self, batch: Sequence[Delivery]) -> list[Item]:
        """Decode a batch and hand every event to its device's lane (``StoppedError``: stopped
        while the order check waited out an outage; the batch stays unsettled)."""
        items = []
        suspects = []
        for delivery in batch:
            key = (delivery.stream, delivery.entry_id)
            if key in self._in_flight:
                continue  # already here (a re-read of our own pending entry)
            if delivery.deliveries > self._settings.max_deliveries and self._executor.tracks_trials:
                suspects.append(delivery)
                continue
            item = Item(self._decode(delivery))
            self._in_flight[key] = item
            items.append(item)
        tried = [await self._trial(delivery) for delivery in suspects]  # redeliveries: first
        decoded = [i for i in items if i.outcome.dead_letter is None]
        if decoded:
            deliveries = [i.outcome.delivery for i in decoded]
            blockers = await self._retrying(
                lambda: self._gate.blockers_of(deliveries),
                "source.order_check_failed",
                self._stop,
            )
            for item in decoded:
                item.blockers = blockers.get(item.outcome.delivery.entry_id, set())
        for item in decoded:
            assert item.outcome.event is not None
            item.lane = _lane(item.outcome.event)
        lanes = collections.Counter(item.lane for item in decoded)
        for item in items:
            if item.outcome.dead_letter is not None:
                self.settler.finish(item)
                continue
            event = item.outcome.event
            assert event is not None
            item.submitted = True
            if lanes[item.lane] == 1 and self._done_here(item, event):
                continue
            self._lanes.submit(item.lane, _order(event), item)
        return tried + items

    def _done_here(self, item: Item, event: Event) -> bool:
        """An event whose rules are inert (``Executor.execute_inert``), alone of its lane in the
        batch with nothing ahead of it there, run now: no lane, no task, nothing awaited."""
        lane = item.lane
        if item.blockers or self._lanes.busy(lane) or lane in self._abandoned or not self._solo.open:
            return False
        try:
            rules = self._executor.execute_inert(event)
            if rules is None:
                return False
            item.outcome.rules = rules
            item.outcome.dead_letter = dead_letter_for(event, rules, self._sealer)
        except Exception as exc:  # a bug in the reactor: the event is kept, with the reason
            item.outcome.dead_letter = self._internal_error(event, item.outcome.delivery, exc)
        self.settler.finish(item)
        return True

    async def _trial(self, delivery: Delivery) -> Item:
        """An entry past ``max_deliveries``: poison if it already ran alone and the process died
        then; else it runs alone now, marked first, and is settled before anything else runs."""
        item = Item(Outcome(delivery, None))
        self._in_flight[(delivery.stream, delivery.entry_id)] = item
        key = delivery.key
        if await self._retrying_state(lambda: self._executor.trial_begun(key)):
            limit = self._settings.max_deliveries
            reason = (
                f"delivered {delivery.deliveries} times (max_deliveries {limit}),"
                " and the process died while it ran alone"
            )
            item.outcome = self._dead(delivery, "poison", reason)
            self.settler.finish(item)
            return item
        async with self._solo.alone():
            await self._retrying_state(lambda: self._executor.begin_trial(key))
            await self.logger.awarning(
                "worker.run_alone",
                stream=delivery.stream,
                entry_id=delivery.entry_id,
                deliveries=delivery.deliveries,
            )
            item.outcome = self._decode(delivery)
            event = item.outcome.event
            if event is None:
                self.settler.finish(item)
            else:
                item.lane = _lane(event)
                item.submitted = True
                await self._run_rules(item)
            if item.processed.is_set():
                await self.settler.flush(self._stop)  # settled before anything else runs
        settled = (delivery.stream, delivery.entry_id) not in self._in_flight
        if settled or self._stop.is_set():  # settled, or stopped on purpose: it killed nothing
            with contextlib.suppress(StoppedError, *self._recoverable):
                await self._retrying_state(lambda: self._executor.end_trial(key))
        return item

    async def _retrying_state(self, call: Callable[[], Awaitable[T]]) -> T:
        """A trial's call to the state store, waited out through an outage or a commit that
        fails (a full disk), logged ``state.unavailable``; ``StoppedError`` once stopped."""
        errors: tuple[type[Exception], ...] = (StateStoreError, *self._recoverable)
        return await Backoff(self._stop).retry(call, errors, self._warn("state.unavailable"))

    async def _retrying(self, call: Callable[[], Awaitable[T]], failed: str, stop: asyncio.Event) -> T:
        """A source call, retried with backoff through an outage; ``StoppedError`` once ``stop`` is set."""
        return await Backoff(stop).retry(call, self._recoverable, self._warn(failed))

    async def process(self, batch: Sequence[Delivery]) -> list[Outcome]:
        """Process one batch to its settled outcomes (for tests, benchmarks and replay)."""
        items = await self.dispatch(batch)
        for item in items:
            await item.processed.wait()
        await self.settler.flush(None)
        return [item.outcome for item in items]

    def _decode(self, delivery: Delivery) -> Outcome:
        """The delivery's event, or its dead-letter record (raw content kept): poison when it was
        delivered more than ``max_deliveries`` times (checked first: it is not decoded again),
        malformed when it does not decode, internal_error when the decoder has a bug."""
        if delivery.deliveries > self._settings.max_deliveries and not self._executor.tracks_trials:
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

    # ---- processing ---------------------------------------------------------------------------

    async def _run_item(self, item: Item) -> None:
        """A lane's step. An exception escaping it is a bug here: the worker stops with it (the
        event stays unsettled, its lane is given up)."""
        try:
            await self._process(item)
        except Exception as exc:
            self._abandoned.add(item.lane)
            self._tasks.fail("lane", exc)

    async def _process(self, item: Item) -> None:
        """One event through the rules, once no entry runs alone."""
        if item.lane in self._abandoned:
            return
        async with self._solo.running():
            await self._run_rules(item)

    async def _run_rules(self, item: Item) -> None:
        """One event through the rules, to be settled; left unsettled when stopped during a state
        store outage (and so is every later item of its lane: the device's order holds)."""
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
            outcome.dead_letter = self._internal_error(event, outcome.delivery, exc)
        self.settler.finish(item)

    def _internal_error(self, event: Event, delivery: Delivery, exc: Exception) -> DeadLetter:
        return DeadLetter(
            event.stream,
            event.entry_id,
            "internal_error",
            f"{type(exc).__name__}: {exc}",
            event.raw,
            attempts=delivery.deliveries,
            secrets=event.secrets,
            sealed=self._sealer.seal_json(event.raw) if self._sealer is not None else "",
        )

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
