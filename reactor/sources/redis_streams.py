"""Redis Streams, everything about it in one file, by face: consuming, status, dead letters.

Consuming (``RedisStreamsSource``): consumer groups, batched XREADGROUP, XACK only when the
outcome is settled.

- After any error, and at start, the consumer first re-reads its own pending entries (id ``0``)
  before new ones (``>``), so an entry read but not settled is processed again, not skipped.
- ``maintain`` renews this consumer's liveness lease and claims the pending entries of consumers
  whose lease expired (they died): no entry is taken from a live consumer, however slow.
- Entries are read as bytes (XREADGROUP, XCLAIM and XRANGE never decoded by the client) and
  decoded here field by field (``_fields``, "replies as read" below): a field that is not UTF-8
  stays bytes, for the decoder to refuse as malformed with its raw bytes kept, instead of an
  exception inside the client's reply parser that no delivery count could ever stop.
- Memory: entries read and not yet settled hold at most ``max_unsettled_bytes`` (their field
  names and values, ``ByteBudget``); beyond it ``read`` waits for a settle, and a read's COUNT
  is what fits in the room left at the largest entry size seen lately (decaying 10% a read,
  512 bytes before the first), shared out among the streams read (XREADGROUP's COUNT is per
  stream). An entry larger than the budget is read alone, when nothing else is unsettled.
- Delivery counts come from the pending entries list; the worker dead-letters an entry delivered
  more than ``max_deliveries`` times as poison, before decoding it: an entry that killed the
  process each time it was read is counted on every restart's re-read, and set aside.
- ``streams`` may hold glob patterns (``StreamDiscovery``, below): the matching streams are found
  by SCAN at start and every ``discover_interval_s``, streams found at start joined at
  ``start_id`` like the literal ones, streams found later joined from their start (id ``0``: the
  entries that created them are events too).
- ``foreign_pending`` (XPENDING) and ``read_entries`` (XRANGE) answer the order gate
  (``delivery/order_gate``), which decodes what other consumers hold and keeps per-device order
  across processes: an event waits while an earlier entry of the same device is pending with
  another consumer (see README, "Delivery contract").

Status (``RedisStreamsSource.status``): per stream the group's lag, pending entries, the oldest
one's age and consumers, and the dead-letter stream's length.

Dead letters (``RedisDeadLetters``): records kept in the stream ``redis.dlq_stream``, what
``reactor dlq`` lists, shows, replays and purges on Redis; a record's id is its stream entry id.

Redis errors are translated to ``SourceError`` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.client import NEVER_DECODE
from redis.exceptions import RedisError, ResponseError

from reactor.errors import SourceError
from reactor.redact import shown_url
from reactor.settings import RedisSettings
from reactor.sources.base import (
    DeadLetter,
    DeadLetterStore,
    Delivery,
    Record,
    Source,
    StoreStatus,
    StreamStatus,
    entry_order,
)
from reactor.sources.budget import ByteBudget


class RedisStreamsSource(Source):
    """Consumes ``settings.streams`` as ``settings.consumer`` in ``settings.group``."""

    name = "redis"
    recoverable = (RedisError, OSError)

    def __init__(self, settings: RedisSettings, client: aioredis.Redis | None = None) -> None:
        self._s = settings
        self._client = client or aioredis.Redis.from_url(settings.url, decode_responses=True)
        self._discovery = self._new_discovery()
        self._streams: list[str] = self._discovery.literal
        self._backlog: dict[str, str] = dict.fromkeys(self._streams, "0")
        self._discover_at = 0.0
        self._started = False  # status() scans the patterns itself until start() has
        self._notices: list[tuple[str, str, dict[str, Any]]] = []
        self._reported: set[str] = set()  # patterns already reported as cut at max_streams
        self._last_read: dict[str, str] = {}
        self._budget = ByteBudget(settings.max_unsettled_bytes, entry_bytes=512.0)  # by (stream, id)
        self.maintain_interval_s = settings.reclaim_interval_s
        if self._discovery.patterns:
            self.maintain_interval_s = min(settings.reclaim_interval_s, settings.discover_interval_s)

    def _new_discovery(self) -> StreamDiscovery:
        s = self._s
        return StreamDiscovery(s.streams, frozenset({s.dlq_stream}), s.max_streams, s.scan_count)

    @property
    def streams(self) -> dict[str, str | None]:
        """The streams consumed now, each with the pattern that found it (None: named literally)."""
        return {s: self._discovery.found.get(s) for s in self._streams}

    @property
    def truncated(self) -> set[str]:
        """The patterns whose matches the last scan cut at ``max_streams``."""
        return set(self._discovery.truncated)

    async def start(self) -> None:
        try:
            await self._renew_lease()
            if self._discovery.patterns:
                joined = await self._discovery.scan(self._client)
                self._backlog.update(dict.fromkeys(joined, "0"))
                self._discover_at = time.monotonic() + self._s.discover_interval_s
                self._notice(joined)
        except RedisError as exc:
            raise SourceError(f"redis {shown_url(self._s.url)}: {exc}") from exc
        self._streams = self._discovery.streams
        self._started = True
        for stream in self._streams:
            await self._join(stream, self._s.start_id)

    async def _join(self, stream: str, start_id: str) -> None:
        """Create our group on ``stream`` at ``start_id`` (the stream too); an existing group stays."""
        try:
            await self._client.xgroup_create(stream, self._s.group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise SourceError(f"XGROUP CREATE {stream} {self._s.group}: {exc}") from exc
        except RedisError as exc:
            raise SourceError(f"redis {shown_url(self._s.url)}: {exc}") from exc

    async def discover(self) -> list[str]:
        """Join the streams that match a pattern and were not known, from their start (id ``0``).

        Called by ``maintain`` every ``discover_interval_s``; returns the streams joined."""
        new = await self._discovery.scan(self._client)
        for stream in new:
            await self._join(stream, "0")
            self._backlog.setdefault(stream, "0")  # our own pending entries there first (a restart)
        self._streams = self._discovery.streams
        self._notice(new)
        return new

    def _notice(self, joined: list[str]) -> None:
        """Streams joined, and (once per pattern) matches left out at ``redis.max_streams``."""
        found = self._discovery.found
        self._notices += [("info", "redis.stream_joined", {"stream": s, "pattern": found[s]}) for s in joined]
        for pattern in sorted(self._discovery.truncated - self._reported):
            why = f"more streams match than redis.max_streams ({self._s.max_streams}); the rest are not read"
            self._notices.append(("warning", "redis.max_streams_reached", {"pattern": pattern, "error": why}))
        self._reported = set(self._discovery.truncated)

    def notices(self) -> list[tuple[str, str, dict[str, Any]]]:
        out, self._notices = self._notices, []
        return out

    async def read(self, max_count: int, block_ms: int) -> list[Delivery]:
        """New entries; first, after a start or an error, this consumer's own pending ones, once."""
        max_count = await self._budget.room(max_count, block_ms)
        if not max_count:
            return []
        backlog = self._backlog
        if not self._streams:  # only patterns, nothing matched yet: wait as a blocking read would
            await asyncio.sleep(block_ms / 1000)
            return []
        streams: dict[Any, Any] = dict(backlog) if backlog else dict.fromkeys(self._streams, ">")
        # COUNT is per stream: shared out, so that one read takes at most max(max_count, streams)
        per_stream = max(1, max_count // len(streams))
        try:
            reply = await self._xreadgroup(streams, per_stream, None if backlog else block_ms)
        except RedisError as exc:
            if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                await self.start()  # the stream or group was deleted under us: recreate
            self._rescan()
            raise SourceError(f"XREADGROUP: {exc}") from exc
        batch = _deliveries(reply)
        self._hold(batch)
        for d in batch:  # a reply lists each stream's entries in id order: the last one is the newest
            self._last_read[d.stream] = d.entry_id
        if not backlog:
            return batch
        for stream in list(backlog):  # page through the pending list once, then read new entries
            seen = [d.entry_id for d in batch if d.stream == stream]
            if seen:
                backlog[stream] = seen[-1]
            else:
                del backlog[stream]
        return await self._with_counts(batch) if batch else batch

    def _hold(self, batch: Sequence[Delivery]) -> None:
        """Count what ``batch`` holds until it is settled (an entry read again counts once)."""
        if batch:
            self._budget.hold(((d.stream, d.entry_id), _size(d.payload)) for d in batch)

    async def _xreadgroup(self, streams: dict[str, str], count: int, block_ms: int | None) -> Any:
        """XREADGROUP with the reply's bytes left undecoded (redis-py's xreadgroup would decode them)."""
        args: list[Any] = ["XREADGROUP", "GROUP", self._s.group, self._s.consumer, "COUNT", count]
        if block_ms is not None:
            args += ["BLOCK", block_ms]
        args += ["STREAMS", *streams.keys(), *streams.values()]
        return await _undecoded(self._client, *args)

    def _rescan(self) -> None:
        """After an error: our pending entries after the last one we received are read again first
        (a read whose reply was lost delivered them to us). Earlier ones are in flight here or
        settled; reading them again would only inflate their delivery counts."""
        self._backlog = {s: self._last_read.get(s, "0") for s in self._streams}

    async def _with_counts(self, batch: list[Delivery]) -> list[Delivery]:
        """The deliveries with their delivery counts from the pending entries list.

        Only re-read and reclaimed entries come here: they were delivered before, so they count
        as redeliveries (at least 2) whatever the list says, and their completed steps are skipped.
        """
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for d in batch:
                    pipe.xpending_range(d.stream, self._s.group, min=d.entry_id, max=d.entry_id, count=1)
                replies = await pipe.execute()
        except RedisError as exc:
            self._rescan()
            raise SourceError(f"XPENDING: {exc}") from exc
        out = []
        for d, rows in zip(batch, replies, strict=True):
            count = int(rows[0]["times_delivered"]) if rows else 0
            out.append(Delivery(d.stream, d.entry_id, d.payload, max(count, 2)))
        return out

    async def settle(self, done: Sequence[Delivery], dead: Sequence[DeadLetter]) -> None:
        if not done and not dead:
            return
        by_stream: dict[str, list[str]] = {}
        for d in done:
            by_stream.setdefault(d.stream, []).append(d.entry_id)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for record in dead:
                    fields: dict[Any, Any] = record.to_fields()
                    pipe.xadd(self._s.dlq_stream, fields, maxlen=self._s.dlq_maxlen, approximate=True)
                for stream, ids in by_stream.items():
                    pipe.xack(stream, self._s.group, *ids)
                await pipe.execute()
        except RedisError as exc:
            self._rescan()
            raise SourceError(f"settling {len(done)} entries: {exc}") from exc
        self._budget.release((d.stream, d.entry_id) for d in done)

    async def maintain(self) -> list[Delivery]:
        """Renew our liveness lease; claim the pending entries of consumers whose lease expired.

        Each consumer holds ``reactor:<group>:alive:<consumer>`` for ``reclaim_idle_ms``, renewed
        every ``reclaim_interval_s``. Redis's own consumer idle time is no liveness signal (it is
        only refreshed when entries are delivered), so a live consumer busy with a slow action
        would look dead; the lease says what it means. A consumer whose lease is gone has its
        entries (idle at least ``reclaim_idle_ms``) claimed here.
        """
        claimed: list[Delivery] = []
        try:
            await self._renew_lease()
            if self._discovery.patterns and time.monotonic() >= self._discover_at:
                self._discover_at = time.monotonic() + self._s.discover_interval_s
                await self.discover()
            for stream in self._streams:
                claimed += await self._claim_from_gone(stream)
        except RedisError as exc:
            raise SourceError(f"reclaim: {exc}") from exc
        self._hold(claimed)
        return await self._with_counts(claimed) if claimed else []

    def _lease(self, consumer: str) -> str:
        return f"reactor:{self._s.group}:alive:{consumer}"

    async def _renew_lease(self) -> None:
        await self._client.set(self._lease(self._s.consumer), "1", px=self._s.reclaim_idle_ms)

    async def _claim_from_gone(self, stream: str) -> list[Delivery]:
        claimed: list[Delivery] = []
        for consumer in await self._client.xinfo_consumers(stream, self._s.group):
            name, pending, idle = str(consumer["name"]), int(consumer["pending"]), int(consumer["idle"])
            if name == self._s.consumer or await self._client.exists(self._lease(name)):
                continue
            if pending == 0:
                if idle > 10 * self._s.reclaim_idle_ms:
                    await self._client.xgroup_delconsumer(stream, self._s.group, name)  # tidy up the gone
                continue
            rows = await self._client.xpending_range(
                stream, self._s.group, min="-", max="+", count=1000, consumername=name
            )
            ids: list[Any] = [
                r["message_id"] for r in rows if int(r["time_since_delivered"]) >= self._s.reclaim_idle_ms
            ]
            if not ids:
                continue
            entries = await _undecoded(
                self._client, "XCLAIM", stream, self._s.group, self._s.consumer, self._s.reclaim_idle_ms, *ids
            )
            claimed += [
                Delivery(stream, _text(eid), _fields(f)) for eid, f in entries or [] if eid is not None
            ]
        return claimed

    async def ready(self) -> bool:
        try:
            return bool(await self._client.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        with contextlib.suppress(RedisError):  # a clean stop gives up the lease at once
            await self._client.delete(self._lease(self._s.consumer))
        await self._client.aclose()

    # ---- what the order gate asks: entries other consumers hold ------------------------------

    async def foreign_pending(self, deliveries: Sequence[Delivery]) -> dict[str, list[str]]:
        """Per stream of the batch: the entries pending with other consumers, up to the batch's
        last entry there. The XPENDING summaries of all the batch's streams in one round trip,
        then the listings, in one more, only where another consumer holds anything."""
        last: dict[str, str] = {}
        for d in deliveries:
            if d.stream not in last or entry_order(d.entry_id) > entry_order(last[d.stream]):
                last[d.stream] = d.entry_id
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for stream in last:
                    pipe.xpending(stream, self._s.group)
                summaries = await pipe.execute()
            foreign = [s for s, summary in zip(last, summaries, strict=True) if self._others_hold(summary)]
            if not foreign:
                return {}  # nobody else holds anything: one round trip, no listing
            async with self._client.pipeline(transaction=False) as pipe:
                for stream in foreign:
                    pipe.xpending_range(stream, self._s.group, min="-", max=last[stream], count=100_000)
                listings = await pipe.execute()
        except RedisError as exc:
            raise SourceError(f"XPENDING: {exc}") from exc
        out = {
            stream: [str(r["message_id"]) for r in rows if r["consumer"] != self._s.consumer]
            for stream, rows in zip(foreign, listings, strict=True)
        }
        return {stream: ids for stream, ids in out.items() if ids}

    def _others_hold(self, summary: dict[str, Any]) -> bool:
        return not {c["name"] for c in summary.get("consumers") or []} <= {self._s.consumer}

    async def read_entries(self, stream: str, entry_ids: Sequence[str]) -> dict[str, Delivery | None]:
        """Each entry as XRANGE reads it, in one pipeline (None: trimmed from the stream)."""
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for entry_id in entry_ids:
                    _undecoded(pipe, "XRANGE", stream, entry_id, entry_id)
                replies = await pipe.execute()
        except RedisError as exc:
            raise SourceError(f"XRANGE {stream}: {exc}") from exc
        return {
            entry_id: Delivery(stream, entry_id, _fields(reply[0][1])) if reply else None
            for entry_id, reply in zip(entry_ids, replies, strict=True)
        }

    async def still_pending(self, stream: str, entry_ids: set[str]) -> set[str]:
        if not entry_ids:
            return set()
        ordered = sorted(entry_ids, key=entry_order)
        try:
            rows = await self._client.xpending_range(
                stream, self._s.group, min=ordered[0], max=ordered[-1], count=100_000
            )
        except RedisError as exc:
            raise SourceError(f"XPENDING: {exc}") from exc
        return {str(r["message_id"]) for r in rows} & entry_ids

    # ---- status ----------------------------------------------------------------------------

    async def status(self) -> StoreStatus:
        """Every stream consumed (never started: every stream the patterns match now), each
        pattern that matches none, then the dead-letter stream's length."""
        status = StoreStatus()
        try:
            found = self._discovery
            if not self._started:  # ``reactor status``: a scan of its own
                found = self._new_discovery()
                await found.scan(self._client)
            for stream in found.streams:
                status.streams.append(await self._stream_status(stream))
                status.streams[-1].pattern = found.found.get(stream)
            for pattern in found.patterns:
                if pattern not in found.found.values():
                    status.streams.append(StreamStatus(pattern, self._s.group, False, pattern=pattern))
            status.dead_letters = int(await self._client.xlen(self._s.dlq_stream))
        except RedisError as exc:
            raise SourceError(f"redis {shown_url(self._s.url)}: {exc}") from exc
        return status

    async def _stream_status(self, stream: str) -> StreamStatus:
        try:
            groups = await self._client.xinfo_groups(stream)
        except ResponseError:  # no such stream
            return StreamStatus(stream, self._s.group, exists=False)
        info = next((g for g in groups if str(g["name"]) == self._s.group), None)
        if info is None:
            return StreamStatus(stream, self._s.group, exists=False)
        lag = None if info.get("lag") is None else int(info["lag"])
        row = StreamStatus(
            stream, self._s.group, True, lag, int(info["pending"]), None, int(info["consumers"])
        )
        if row.pending:
            oldest = await self._client.xpending_range(stream, self._s.group, min="-", max="+", count=1)
            if oldest:
                row.oldest_pending_s = int(oldest[0]["time_since_delivered"]) / 1000
        return row

    # ---- dead letters ----------------------------------------------------------------------

    async def open_dead_letters(self) -> DeadLetterStore:
        client = aioredis.Redis.from_url(self._s.url, decode_responses=True)
        return RedisDeadLetters(client, self._s.dlq_stream)


# ---- consuming: which streams ``redis.streams`` names -------------------------------------------

GLOB_CHARS = frozenset("*?[")
#: The reactor's own keys (leases, the audit trail ``reactor:<group>:audit``): never consumed.
OWN_PREFIX = "reactor:"


def is_pattern(name: str) -> bool:
    """Whether ``name`` is a glob pattern (Redis MATCH syntax) rather than a stream key."""
    return not GLOB_CHARS.isdisjoint(name)


@dataclass
class StreamDiscovery:
    """The configured names split into literal streams and patterns, and the streams found.

    SuperMQ at HEAD publishes each operation to its own stream (``events.supermq.client.create``,
    ``events.magistrala.bootstrap.config.create``, ...) and Redis has no wildcard subscription, so
    a pattern such as ``events.magistrala.bootstrap.*`` is resolved here: ``SCAN MATCH <pattern>
    TYPE stream COUNT <scan_count>``, repeated every ``discover_interval_s``. A name is a pattern
    when it holds a glob character (``*``, ``?``, ``[``: Redis's MATCH syntax). Bounds: at most
    ``max_streams`` streams in all (literal ones count); beyond it no more are joined and the
    refusal is reported once per pattern pass. The dead-letter stream and the reactor's own keys
    (``reactor:``..., its audit trail among them) are never a match, whatever the pattern (the
    reactor would consume what it writes)."""

    names: Iterable[str]
    exclude: frozenset[str]
    max_streams: int
    scan_count: int
    literal: list[str] = field(init=False)
    patterns: list[str] = field(init=False)
    #: stream → the pattern that found it (insertion order: the order they were joined).
    found: dict[str, str] = field(init=False, default_factory=dict)
    #: Patterns whose matches were cut at ``max_streams`` in the last pass.
    truncated: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        names = list(dict.fromkeys(self.names))
        self.literal = [n for n in names if not is_pattern(n)]
        self.patterns = [n for n in names if is_pattern(n)]

    @property
    def streams(self) -> list[str]:
        """Every stream consumed: the literal ones, then the found ones in the order found."""
        return [*self.literal, *self.found]

    async def scan(self, client: Any) -> list[str]:
        """One pass over the keyspace per pattern: the matching streams not known before (joined
        to ``found``), bounded by ``max_streams``. Redis errors propagate (the caller translates)."""
        new: list[str] = []
        self.truncated.clear()
        known = set(self.literal) | set(self.found) | self.exclude
        for pattern in self.patterns:
            async for key in client.scan_iter(match=pattern, count=self.scan_count, _type="STREAM"):
                name = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else str(key)
                if name in known or name.startswith(OWN_PREFIX):
                    continue
                if len(self.literal) + len(self.found) >= self.max_streams:
                    self.truncated.add(pattern)
                    break
                known.add(name)
                self.found[name] = pattern
                new.append(name)
        return new


# ---- consuming: replies as read --------------------------------------------------------------------


def _undecoded(client: Any, *args: Any) -> Any:
    """``client.execute_command(*args)`` with the reply's bytes left as bytes (an awaitable, or the
    pipeline itself when ``client`` is one)."""
    return client.execute_command(*args, **{NEVER_DECODE: True})


def _deliveries(reply: Any) -> list[Delivery]:
    """XREADGROUP's undecoded reply (RESP2 list or RESP3 dict) as Deliveries.

    A pending entry that the stream has since trimmed comes back with no fields: it is delivered
    with an empty payload, so that it fails decoding and is dead-lettered and acked, not stuck.
    """
    items = reply.items() if isinstance(reply, dict) else (reply or [])
    out: list[Delivery] = []
    for stream_name, entries in items:
        stream = _text(stream_name)
        for entry_id, raw in entries:
            out.append(Delivery(stream, _text(entry_id), _fields(raw)))
    return out


def _size(payload: Any) -> int:
    """Bytes of an entry's field names and values (as read: text or bytes)."""
    if isinstance(payload, dict):
        return sum(map(len, payload)) + sum(map(len, payload.values()))
    return len(payload)


def _text(value: Any) -> str:
    """A stream name or entry id (ours, or Redis's: ASCII) as text."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _fields(raw: Any) -> dict[Any, Any]:
    """An entry's fields as text, each one that is UTF-8; one that is not stays bytes (name or value)."""
    if not raw:
        return {}
    try:
        return {k.decode(): v.decode() for k, v in raw.items()}  # the common case, in one pass
    except UnicodeDecodeError:
        return {_utf8_or_bytes(k): _utf8_or_bytes(v) for k, v in raw.items()}


def _utf8_or_bytes(value: bytes) -> str | bytes:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value


# ---- dead letters ------------------------------------------------------------------------------


class RedisDeadLetters(DeadLetterStore):
    """The dead-letter stream of one Redis (``redis.dlq_stream``); a record's id is its entry id."""

    def __init__(self, client: aioredis.Redis, stream: str) -> None:
        self.client = client
        self.stream = self.where = stream

    async def close(self) -> None:
        await self.client.aclose()

    async def _fetch(self, ids: Sequence[str], limit: int | None) -> list[Record]:
        raw: list[Any] = []
        try:
            if ids:
                for record_id in ids:
                    raw += await self.client.xrange(self.stream, record_id, record_id) or []
            else:
                raw = await self.client.xrevrange(self.stream, count=limit) or []
        except RedisError as exc:
            raise SourceError(f"dead-letter stream {self.stream}: {exc}") from exc
        return [Record(str(i), dict(f)) for i, f in raw]

    async def count(self) -> int:
        try:
            return int(await self.client.xlen(self.stream))
        except RedisError as exc:
            raise SourceError(f"dead-letter stream {self.stream}: {exc}") from exc

    async def delete(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(await self.client.xdel(self.stream, *ids))

    async def purge(self) -> int:
        count = await self.count()
        await self.client.delete(self.stream)
        return count

    async def replace(self, add: Sequence[DeadLetter], remove: Sequence[str]) -> None:
        """In one transaction: a replay never loses a record nor keeps a replayed one."""
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                for record in add:
                    fields: dict[Any, Any] = record.to_fields()
                    pipe.xadd(self.stream, fields)
                if remove:
                    pipe.xdel(self.stream, *remove)
                await pipe.execute()
        except RedisError as exc:
            raise SourceError(f"replay: {exc}") from exc
