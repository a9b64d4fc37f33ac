"""Dead-letter records kept in a Redis stream (``redis.dlq_stream``): what ``reactor dlq`` lists,
shows, replays and purges on Redis. A record's id is its stream entry id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from reactor.errors import SourceError
from reactor.sources.deadletter import DeadLetter, DeadLetterStore, Record


class RedisDeadLetters(DeadLetterStore):
    """The dead-letter stream of one Redis."""

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
