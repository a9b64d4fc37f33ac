"""The cross-process order gate: an event waits until other consumers settled its device's earlier
entries (README, "Delivery contract").

The source names, per delivery, the earlier entries of the same device still pending at another
consumer (``Source.earlier_pending``); the gate holds an item in its lane until they are settled.
Waiting items do not ask the source themselves: one poller asks about every blocker of a stream
at once per round (thousands of items may wait after a consumer died).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

from reactor.delivery.outcome import InFlight, Item
from reactor.errors import DecodeError
from reactor.events.decode import Decoder
from reactor.sources.base import Delivery, Source
from reactor.supervise import Supervisor

_BLOCKER_POLL_S = 0.02


class OrderGate:
    """Holds items whose device has earlier entries pending at another consumer."""

    def __init__(
        self,
        source: Source,
        decoder: Decoder,
        recoverable: tuple[type[Exception], ...],
        in_flight: InFlight,
        abandoned: set[Hashable],
        stop: asyncio.Event,
        tasks: Supervisor,
    ) -> None:
        self._source = source
        self._decoder = decoder
        self._recoverable = recoverable
        self._in_flight = in_flight
        self._abandoned = abandoned  # lanes given up on stop (shared with the worker)
        self._blocked: dict[str, set[str]] = {}
        self._settled: dict[str, set[str]] = {}
        self._poll_round = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._stop = stop
        self._tasks = tasks

    def start(self, stop: asyncio.Event, tasks: Supervisor) -> None:
        """The daemon's stop and the worker's supervisor, once running (the poller is one of its tasks)."""
        self._stop = stop
        self._tasks = tasks

    def device_of(self, delivery: Delivery) -> str | None:
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

    async def wait_blockers(self, item: Item, earlier_arrived: Callable[[], bool]) -> bool:
        """Wait until another consumer settled this device's earlier entries; False to yield the lane."""
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
