"""Redis Streams: consumer groups, batched XREADGROUP, XACK only when the outcome is settled.

Redis errors are translated to ``SourceError`` here. After any error, and at start, the
consumer first re-reads its own pending entries (id ``0``) before new ones (``>``), so an entry
read but not settled before a connection loss is processed again rather than skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from reactor.delivery.deadletter import DeadLetter
from reactor.errors import SourceError
from reactor.settings import RedisSettings
from reactor.sources.base import Delivery, Source


class RedisStreamsSource(Source):
    """Consumes ``settings.streams`` as ``settings.consumer`` in ``settings.group``."""

    name = "redis"

    def __init__(self, settings: RedisSettings, client: aioredis.Redis | None = None) -> None:
        self._s = settings
        self._client = client or aioredis.Redis.from_url(settings.url, decode_responses=True)
        self._backlog = True

    async def start(self) -> None:
        for stream in self._s.streams:
            try:
                await self._client.xgroup_create(stream, self._s.group, id=self._s.start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise SourceError(f"XGROUP CREATE {stream} {self._s.group}: {exc}") from exc
            except RedisError as exc:
                raise SourceError(f"redis {self._s.url}: {exc}") from exc

    async def read(self, max_count: int, block_ms: int) -> list[Delivery]:
        start = "0" if self._backlog else ">"
        try:
            reply = await self._client.xreadgroup(
                self._s.group,
                self._s.consumer,
                dict.fromkeys(self._s.streams, start),
                count=max_count,
                block=None if self._backlog else block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                await self.start()  # the stream or group was deleted under us: recreate
            self._backlog = True
            raise SourceError(f"XREADGROUP: {exc}") from exc
        except RedisError as exc:
            self._backlog = True
            raise SourceError(f"XREADGROUP: {exc}") from exc
        batch = _deliveries(reply)
        if self._backlog and not batch:
            self._backlog = False
        return batch

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
            self._backlog = True
            raise SourceError(f"settling {len(done)} entries: {exc}") from exc

    async def ready(self) -> bool:
        try:
            return bool(await self._client.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        await self._client.aclose()


def _deliveries(reply: Any) -> list[Delivery]:
    """XREADGROUP's reply (RESP2 list or RESP3 dict) as Deliveries.

    A pending entry that the stream has since trimmed comes back with no fields: it is delivered
    with an empty payload, so that it fails decoding and is dead-lettered and acked, not stuck.
    """
    items = reply.items() if isinstance(reply, dict) else (reply or [])
    out: list[Delivery] = []
    for stream, entries in items:
        for entry_id, fields in entries:
            out.append(Delivery(stream, entry_id, fields or {}))
    return out
