"""NATS JetStream: a durable pull consumer on SuperMQ's ``events`` stream; explicit acks after the
outcome is settled; what is not acked comes back after ``ack_wait_s`` (a crashed process's work);
dead-letter records are published to a JetStream subject of their own. Payloads are protobuf-wrapped
JSON (or bare JSON): the decoder handles both. NATS errors are translated to ``SourceError``.

A message's entry id is its stream sequence: the same on every delivery of it, distinct between
messages of the stream (a stream deleted and made again starts over at 1: clear the state store
of completed steps then, or keep ``state.retention_s`` shorter than the gap). While a message is
held (read, not settled) ``maintain`` tells JetStream it is in progress every quarter of
``ack_wait_s``, so a slow or queued message is not redelivered to another process while this one
still acts on it (that process would apply it a second time); a dead process's messages come
back after ``ack_wait_s``. A server killed and restarted forgets acks and delivery counts it had
not synced to disk: a message stored more than a second before its "first" delivery is taken as
a redelivery, so that its completed steps are looked up rather than applied again.

Per-device order holds within one process; JetStream spreads one durable consumer's messages over
every process pulling from it, so across processes order is not guaranteed here (use one process
per consumer, or Redis Streams for order across processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

import nats
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from reactor.errors import SourceError
from reactor.settings import NatsSettings
from reactor.sources.base import Delivery, Source
from reactor.sources.deadletter import DeadLetter

_DAY_S = 86_400
_FIRST_CONNECT_S = 5.0
#: A message first delivered longer than this after it was stored may have been acted on already.
_FRESH_S = 1.0


class NatsJetStreamSource(Source):
    name = "nats"
    recoverable = (NatsError, OSError)

    def __init__(self, settings: NatsSettings) -> None:
        self._s = settings
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        self._messages: dict[str, Any] = {}  # held (read, not settled), by entry id
        self._touched: dict[str, float] = {}  # when JetStream last heard of each held one
        self._held_at_disconnect: set[str] = set()  # may be redelivered elsewhere meanwhile
        self.maintain_interval_s = settings.ack_wait_s / 4

    async def start(self) -> None:
        try:
            self._nc = await self._connect()
            self._js = self._nc.jetstream()
            await self._ensure_streams()
            config = ConsumerConfig(
                durable_name=self._s.durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self._s.ack_wait_s,
                deliver_policy=DeliverPolicy.ALL,
                filter_subject=self._s.filter_subject,
                max_deliver=-1,
            )
            self._sub = await self._js.pull_subscribe(
                self._s.filter_subject, durable=self._s.durable, stream=self._s.stream, config=config
            )
        except self.recoverable as exc:
            raise SourceError(f"nats {self._s.url}: {exc}") from exc

    async def _connect(self) -> Any:
        """A connection that reconnects for ever once made; the first one is given
        ``_FIRST_CONNECT_S`` (nats-py would try for ever, deaf to a stop, printing tracebacks)."""
        errors: list[str] = []

        async def noted(exc: Exception) -> None:  # instead of nats-py's traceback on stderr
            errors.append(str(exc) or type(exc).__name__)

        connecting = nats.connect(
            self._s.url,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=noted,
            disconnected_cb=self._disconnected,
        )
        try:
            return await asyncio.wait_for(connecting, _FIRST_CONNECT_S)
        except TimeoutError:
            last = errors[-1] if errors else "no answer"
            raise SourceError(
                f"nats {self._s.url}: not reachable within {_FIRST_CONNECT_S:g} s ({last})"
            ) from None

    async def _ensure_streams(self) -> None:
        wanted = [(self._s.stream, self._s.subjects), (self._s.dlq_stream, [self._s.dlq_subject])]
        for name, subjects in wanted:
            try:
                await self._js.stream_info(name)
            except NotFoundError:
                if not self._s.create_stream and name == self._s.stream:
                    raise SourceError(f"nats: stream {name!r} does not exist") from None
                await self._js.add_stream(
                    StreamConfig(  # SuperMQ's settings (supermq-facts.md §1.2)
                        name=name,
                        subjects=subjects,
                        retention=RetentionPolicy.LIMITS,
                        max_age=_DAY_S if name == self._s.stream else 30 * _DAY_S,
                        max_msg_size=1 << 20,
                        discard=DiscardPolicy.OLD,
                        storage=StorageType.FILE,
                    )
                )

    async def read(self, max_count: int, block_ms: int) -> list[Delivery]:
        try:
            messages = await self._sub.fetch(batch=max_count, timeout=max(block_ms, 1) / 1000)
        except (NatsTimeout, TimeoutError):  # nothing arrived in time (either library's timeout)
            return []
        except self.recoverable as exc:
            raise SourceError(f"nats fetch: {exc}") from exc
        out = []
        now, wall = time.monotonic(), time.time()
        for msg in messages:
            meta = msg.metadata
            entry_id = str(meta.sequence.stream)
            self._messages[entry_id] = msg  # a redelivery of one held here: ack the newest
            self._touched[entry_id] = now
            out.append(Delivery(msg.subject, entry_id, bytes(msg.data), _deliveries(meta, wall)))
        return out

    async def settle(self, done: Sequence[Delivery], dead: Sequence[DeadLetter]) -> None:
        try:
            for record in dead:
                await self._js.publish(self._s.dlq_subject, json.dumps(record.to_fields()).encode())
            for delivery in done:
                msg = self._messages.get(delivery.entry_id)
                if msg is not None:
                    await msg.ack_sync()  # held until acked: a settle retried after an outage acks again
                    self._forget(delivery.entry_id)
        except self.recoverable as exc:
            raise SourceError(f"nats settle: {exc}") from exc

    async def maintain(self) -> list[Delivery]:
        """Tell JetStream the messages held longer than ``maintain_interval_s`` are in progress
        (resetting their ``ack_wait``); nothing is reclaimed here, JetStream redelivers itself."""
        due = time.monotonic() - self.maintain_interval_s
        try:
            for entry_id, touched in list(self._touched.items()):
                msg = self._messages.get(entry_id)
                if msg is not None and touched <= due:
                    await msg.in_progress()
                    self._touched[entry_id] = time.monotonic()
        except self.recoverable as exc:
            raise SourceError(f"nats in-progress: {exc}") from exc
        return []

    def _forget(self, entry_id: str) -> Any:
        self._touched.pop(entry_id, None)
        self._held_at_disconnect.discard(entry_id)
        return self._messages.pop(entry_id, None)

    async def _disconnected(self) -> None:
        """What we hold now may be redelivered to another process before we act on it (the
        server, restarted, forgot our in-progress acks): look its completed steps up first."""
        self._held_at_disconnect.update(self._messages)

    def maybe_acted_on(self, delivery: Delivery) -> bool:
        return delivery.deliveries > 1 or delivery.entry_id in self._held_at_disconnect

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            msg = self._forget(delivery.entry_id)
            if msg is not None:
                try:
                    await msg.nak()
                except self.recoverable:
                    continue  # it comes back after ack_wait anyway

    async def ready(self) -> bool:
        return bool(self._nc is not None and self._nc.is_connected)

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(NatsError, OSError):
                await self._nc.close()
            self._nc = None


def _deliveries(meta: Any, now: float) -> int:
    """The delivery count to act on: JetStream's, except that a "first" delivery of a message
    stored more than ``_FRESH_S`` ago counts as a redelivery (its completed steps are looked up).

    A JetStream server killed and started again forgets the acks and delivery counts it had not
    yet synced to disk (acks it had confirmed, too): a message acted on and acked comes back
    delivered "once". A fresh message (the steady state) is not looked up; a backlog is."""
    count = int(meta.num_delivered)
    if count == 1 and now - meta.timestamp.timestamp() > _FRESH_S:
        return 2
    return count
