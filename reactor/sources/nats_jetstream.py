"""NATS JetStream: a durable pull consumer on SuperMQ's ``events`` stream; explicit acks after the
outcome is settled; what is not acked comes back after ``ack_wait_s`` (a crashed process's work);
dead-letter records are published to a JetStream subject of their own. Payloads are protobuf-wrapped
JSON (or bare JSON): the decoder handles both. NATS errors are translated to ``SourceError``.

Per-device order holds within one process; JetStream spreads one durable consumer's messages over
every process pulling from it, so across processes order is not guaranteed here (use one process
per consumer, or Redis Streams for order across processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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

from reactor.delivery.deadletter import DeadLetter
from reactor.errors import SourceError
from reactor.settings import NatsSettings
from reactor.sources.base import Delivery, Source

_DAY_S = 86_400
_FIRST_CONNECT_S = 5.0


class NatsJetStreamSource(Source):
    name = "nats"
    recoverable = (NatsError, OSError)

    def __init__(self, settings: NatsSettings) -> None:
        self._s = settings
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        self._messages: dict[str, Any] = {}

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
            self._s.url, max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=noted
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
        for msg in messages:
            meta = msg.metadata
            entry_id = str(meta.sequence.stream)
            self._messages[entry_id] = msg
            out.append(Delivery(msg.subject, entry_id, bytes(msg.data), int(meta.num_delivered)))
        return out

    async def settle(self, done: Sequence[Delivery], dead: Sequence[DeadLetter]) -> None:
        try:
            for record in dead:
                await self._js.publish(self._s.dlq_subject, json.dumps(record.to_fields()).encode())
            for delivery in done:
                msg = self._messages.pop(delivery.entry_id, None)
                if msg is not None:
                    await msg.ack_sync()
        except self.recoverable as exc:
            raise SourceError(f"nats settle: {exc}") from exc

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            msg = self._messages.pop(delivery.entry_id, None)
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
