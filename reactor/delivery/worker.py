"""The consume loop: read a batch → decode → match and act → settle (dead-letter, then ack).

Events of one batch run concurrently (bounded by ``worker.concurrency``) except that events
about the same device run one after another in stream order. The batch is settled in one call
once every event in it has an outcome; nothing is acknowledged before that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from reactor.delivery.deadletter import DeadLetter
from reactor.delivery.executor import Executor, RuleOutcome, dead_letter_for
from reactor.errors import DecodeError, SourceError
from reactor.events.decode import Decoder
from reactor.events.model import Event
from reactor.settings import WorkerSettings
from reactor.sources.base import Delivery, Source

_MAX_BACKOFF_S = 5.0


@dataclass(slots=True)
class Outcome:
    """The settled result of one delivery."""

    delivery: Delivery
    event: Event | None
    rules: list[RuleOutcome] = field(default_factory=list)
    dead_letter: DeadLetter | None = None


Observer = Callable[[Outcome], None]


@dataclass(slots=True)
class Counters:
    """What the worker has done since it started."""

    events: int = 0
    matched: int = 0
    actions_ok: int = 0
    actions_failed: int = 0
    dead_lettered: int = 0


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
    ) -> None:
        self._source = source
        self._decoder = decoder
        self._executor = executor
        self._settings = settings
        self._batch_size = batch_size
        self._block_ms = block_ms
        self._log = logger
        self._observers = list(observers)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self.counters = Counters()

    async def run(self, stop: asyncio.Event) -> None:
        """Read and process batches until ``stop`` is set; finish the batch in hand first."""
        backoff = 0.1
        while not stop.is_set():
            try:
                batch = await self._source.read(self._batch_size, self._block_ms)
            except SourceError as exc:
                await self._log.awarning("source.read_failed", error=str(exc), retry_in_s=backoff)
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            backoff = 0.1
            if batch:
                await self.process(batch, stop)
            elif self._source.exhausted:
                return

    async def process(self, batch: Sequence[Delivery], stop: asyncio.Event | None = None) -> list[Outcome]:
        """Process one batch to its outcomes and settle it."""
        outcomes = [self._decode(d) for d in batch]
        groups: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            ev = outcome.event
            key = ev.device if ev is not None and ev.device else f"entry:{outcome.delivery.entry_id}"
            groups.setdefault(key, []).append(outcome)
        await asyncio.gather(*(self._run_group(g) for g in groups.values()))
        await self._settle(batch, outcomes, stop)
        for outcome in outcomes:
            self._count(outcome)
            for observer in self._observers:
                observer(outcome)
        return outcomes

    def _decode(self, delivery: Delivery) -> Outcome:
        try:
            event = self._decoder.decode(
                delivery.payload, source=self._source.name, stream=delivery.stream, entry_id=delivery.entry_id
            )
        except DecodeError as exc:
            record = DeadLetter(
                stream=delivery.stream,
                entry_id=delivery.entry_id,
                reason="malformed",
                error=exc.detail,
                event=_raw(delivery),
                attempts=delivery.deliveries,
            )
            return Outcome(delivery, None, dead_letter=record)
        return Outcome(delivery, event)

    async def _run_group(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.event is None:
                continue
            async with self._slots:
                outcome.rules = await self._executor.execute(outcome.event)
            outcome.dead_letter = dead_letter_for(outcome.event, outcome.rules)

    async def _settle(
        self, batch: Sequence[Delivery], outcomes: list[Outcome], stop: asyncio.Event | None
    ) -> None:
        dead = [o.dead_letter for o in outcomes if o.dead_letter is not None]
        backoff = 0.1
        while True:
            try:
                await self._source.settle(batch, dead)
                return
            except SourceError as exc:
                if stop is not None and stop.is_set():
                    await self._log.aerror("source.settle_abandoned", error=str(exc), entries=len(batch))
                    return  # left pending: redelivered on the next start
                await self._log.awarning("source.settle_failed", error=str(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def _count(self, outcome: Outcome) -> None:
        c = self.counters
        c.events += 1
        c.matched += len(outcome.rules)
        for rule in outcome.rules:
            c.actions_ok += sum(1 for s in rule.steps if s.ok)
            c.actions_failed += sum(1 for s in rule.steps if not s.ok)
        c.dead_lettered += outcome.dead_letter is not None


def _raw(delivery: Delivery) -> dict[str, object]:
    payload = delivery.payload
    if isinstance(payload, bytes):
        return {"body": payload.decode("utf-8", "replace")}
    return dict(payload)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return
