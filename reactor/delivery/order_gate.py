"""The cross-process order gate: an event waits until other consumers settled its device's earlier
entries (README, "Delivery contract").

The source lists the entries other consumers hold unsettled (``Source.foreign_pending``) and reads
them (``Source.read_entries``, ``_READ_CHUNK`` at a time); the gate decodes them, once each (at most
``_MAX_KNOWN`` remembered, the least recently asked about forgotten first), names per delivery the
earlier entries of its device and stream among them, and holds the item in its lane until they are
settled. The source knows nothing of events or devices.

Waiting items do not ask the source themselves: one poller asks about every blocker of a stream
at once per round (thousands of items may wait after a consumer died).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence

import structlog

from reactor.delivery.outcome import InFlight, Item
from reactor.errors import DecodeError
from reactor.events.decode import Decoder
from reactor.sources.base import Delivery, Source, entry_order
from reactor.supervise import Supervisor

_BLOCKER_POLL_S = 0.02
#: At most this many foreign entries' stream and device remembered (each is read and decoded once).
_MAX_KNOWN = 100_000
#: Foreign entries read from the source at a time (their bodies held until decoded).
_READ_CHUNK = 100


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
        logger: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._source = source
        self._log = logger or structlog.get_logger("reactor").bind(logger="reactor.order_gate")
        self._decoder = decoder
        self._recoverable = recoverable
        self._in_flight = in_flight
        self._abandoned = abandoned  # lanes given up on stop (shared with the worker)
        self._blocked: dict[str, set[str]] = {}
        # (listed, id): (round last asked in, (stream, device)); least recently asked first
        self._known: dict[tuple[str, str], tuple[int, tuple[str, str | None]]] = {}
        self._round = 0
        self._settled: dict[str, set[str]] = {}
        self._poll_round = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._stop = stop
        self._tasks = tasks

    def start(self, stop: asyncio.Event, tasks: Supervisor) -> None:
        """The daemon's stop and the worker's supervisor, once running (the poller is one of its tasks)."""
        self._stop = stop
        self._tasks = tasks

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

    def _foreign_device(self, entry: Delivery) -> str | None:
        """The device of an entry another consumer holds; None (it holds nothing up) when it does
        not decode, or when the decoder fails on it (a bug: the worker that holds it makes it
        internal_error; here it is logged, once, as the entry is decoded once, and never stops
        the worker)."""
        try:
            return self._device_of(entry)
        except Exception as exc:  # the decoder's bug, not the entry's: never fatal here
            self._log.warning(
                "order_gate.undecodable_entry",
                stream=entry.stream,
                entry_id=entry.entry_id,
                error=type(exc).__name__,  # its text may quote the entry's content
            )
            return None

    async def blockers_of(self, deliveries: Sequence[Delivery]) -> dict[str, set[str]]:
        """Per delivery (by entry id): the earlier unsettled entries of its device and stream held
        by other consumers, which must settle first. Source errors propagate (the caller retries)."""
        held: dict[tuple[str, str], list[str]] = {}
        self._round += 1
        for listed, ids in (await self._source.foreign_pending(deliveries)).items():
            for entry_id, (stream, device) in (await self._devices(listed, ids)).items():
                if device is not None:
                    held.setdefault((stream, device), []).append(entry_id)
        out: dict[str, set[str]] = {}
        for delivery in deliveries if held else ():
            same = held.get((delivery.stream, self._device_of(delivery) or ""))
            if same:
                order = entry_order(delivery.entry_id)
                blockers = {entry_id for entry_id in same if entry_order(entry_id) < order}
                if blockers:
                    out[delivery.entry_id] = blockers
        return out

    async def _devices(self, listed: str, ids: list[str]) -> dict[str, tuple[str, str | None]]:
        """The stream and device of each entry listed in ``listed``: read and decoded once (one
        gone from the store has none: it holds nothing up). Read ``_READ_CHUNK`` at a time, each
        chunk decoded before the next is read: at most a chunk of bodies is held at once, however
        many entries other consumers hold (a NATS message may be 1 MiB)."""
        out: dict[str, tuple[str, str | None]] = {}
        unknown = []
        for entry_id in ids:
            hit = self._known.pop((listed, entry_id), None)
            if hit is None:
                unknown.append(entry_id)
            else:  # asked again: the most recent now
                self._known[(listed, entry_id)] = (self._round, hit[1])
                out[entry_id] = hit[1]
        for start in range(0, len(unknown), _READ_CHUNK):
            chunk = unknown[start : start + _READ_CHUNK]
            entries = await self._source.read_entries(listed, chunk)
            found: dict[str, tuple[str, str | None]] = {}
            for entry_id in chunk:
                entry = entries.get(entry_id)
                found[entry_id] = ("", None) if entry is None else (entry.stream, self._foreign_device(entry))
            del entries  # the bodies: gone before the next chunk is read
            self._remember(listed, found)
            out |= found
        return out

    def _remember(self, listed: str, found: dict[str, tuple[str, str | None]]) -> None:
        """At most ``_MAX_KNOWN``: room made by forgetting the least recently asked about (settled
        ones, first). What this round asked about is kept: when it alone fills the cache, the rest
        is not remembered, and only that excess is read again next round (a cache emptied or
        evicted in order would read again half or all of a listing larger than itself)."""
        for entry_id, device in found.items():
            if len(self._known) >= _MAX_KNOWN:
                oldest = next(iter(self._known), None)
                if oldest is None or self._known[oldest][0] == self._round:
                    return
                del self._known[oldest]
            self._known[(listed, entry_id)] = (self._round, device)

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
