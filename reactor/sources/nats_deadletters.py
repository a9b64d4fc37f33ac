"""Dead-letter records kept in a JetStream stream (``nats.dlq_stream``): the same ``reactor dlq``
commands as on Redis. A record's id is its stream sequence number."""

from __future__ import annotations

import json
from collections.abc import Sequence

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from reactor.errors import SourceError
from reactor.redact import shown_url
from reactor.settings import NatsSettings
from reactor.sources.deadletter import DeadLetter, DeadLetterStore, Record


class NatsDeadLetters(DeadLetterStore):
    """``await NatsDeadLetters.connect(settings)``; ``close()`` when done."""

    def __init__(self, settings: NatsSettings, nc: NatsClient) -> None:
        self._s = settings
        self._nc = nc
        self._js = nc.jetstream()
        self.where = f"JetStream stream {settings.dlq_stream}"

    @property
    def jetstream(self) -> JetStreamContext:
        """The connection's JetStream context (``reactor status`` asks it about the consumer)."""
        return self._js

    @classmethod
    async def connect(cls, settings: NatsSettings) -> NatsDeadLetters:
        try:
            nc = await nats.connect(settings.url, connect_timeout=5, max_reconnect_attempts=0)
        except (NatsError, OSError) as exc:
            raise SourceError(f"nats {shown_url(settings.url)}: {exc}") from exc
        return cls(settings, nc)

    async def _get(self, seq: int) -> Record | None:
        try:
            msg = await self._js.get_msg(self._s.dlq_stream, seq)
        except NotFoundError:
            return None  # deleted, or never there
        return Record(str(seq), {str(k): str(v) for k, v in json.loads(msg.data or b"{}").items()})

    async def _fetch(self, ids: Sequence[str], limit: int | None) -> list[Record]:
        try:
            if ids:
                found = [await self._get(int(i)) for i in ids if i.isdigit()]
                return [r for r in found if r is not None]
            state = (await self._js.stream_info(self._s.dlq_stream)).state
            records: list[Record] = []
            # Sequences start at 1: an empty stream reports first_seq 0, and JetStream answers a
            # request for message 0 with 400.
            for seq in range(state.last_seq, max(state.first_seq, 1) - 1, -1):
                if limit is not None and len(records) >= limit:
                    break
                record = await self._get(seq)
                if record is not None:
                    records.append(record)
            return records
        except NotFoundError:
            return []  # no dead-letter stream yet: nothing was dead-lettered
        except (NatsError, OSError, ValueError) as exc:
            raise SourceError(f"{self.where}: {exc}") from exc

    async def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        for record_id in ids:
            if not record_id.isdigit():
                continue
            try:
                removed += bool(await self._js.delete_msg(self._s.dlq_stream, int(record_id)))
            except NotFoundError:
                continue
            except (NatsError, OSError) as exc:
                raise SourceError(f"{self.where}: {exc}") from exc
        return removed

    async def count(self) -> int:
        try:
            return int((await self._js.stream_info(self._s.dlq_stream)).state.messages)
        except NotFoundError:
            return 0  # no dead-letter stream yet: nothing was dead-lettered
        except (NatsError, OSError) as exc:
            raise SourceError(f"{self.where}: {exc}") from exc

    async def purge(self) -> int:
        count = await self.count()
        try:
            await self._js.purge_stream(self._s.dlq_stream)
        except NotFoundError:
            return 0
        except (NatsError, OSError) as exc:
            raise SourceError(f"{self.where}: {exc}") from exc
        return count

    async def replace(self, add: Sequence[DeadLetter], remove: Sequence[str]) -> None:
        """New records first, then the deletions: JetStream has no transaction, and a crash in
        between leaves a replayed record twice rather than losing one."""
        try:
            for record in add:
                await self._js.publish(self._s.dlq_subject, json.dumps(record.to_fields()).encode())
        except (NatsError, OSError) as exc:
            raise SourceError(f"replay: {exc}") from exc
        await self.delete(remove)

    async def close(self) -> None:
        await self._nc.close()
