"""The state store: which (event, rule, action) steps completed, and their results.

A redelivered event (a crash before its ack, a reclaim, a replay) skips the steps that already
completed and reuses their results for the steps after them, so an action is not applied twice.
Records expire after ``state.retention_s``. Backends: SQLite (one process, the embedded default),
Redis (several processes), memory (tests, demo).

The window that remains: a crash after an action's effect and before its record is durable
repeats that one action on redelivery. SuperMQ's APIs take no idempotency key, so it cannot be
closed from here; the shipped actions are idempotent where SuperMQ allows (merge patches, states,
409 on connect). SQLite commits records in groups: at ``flush``, which the settler calls before it
acks a batch, and ``state.commit_interval_ms`` after a record (plus any stall of the event loop).
A step is so durable no later than the ack of its event, and a step whose event still runs, that
interval after it completed, unless the commit fails (a full disk): then the batch is acked all
the same, the records stay pending for the next commit (bounded: ``accepting`` refuses at
``MAX_PENDING``), and a crash before one succeeds repeats them on redelivery (README, "Delivery
contract").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from reactor.backoff import Backoff, StoppedError
from reactor.delivery.wal import off_the_loop
from reactor.errors import StateStoreError
from reactor.secrets import SEALED, Sealer, SealError, Secret

Steps = dict[str, Any]


def step_key(rule: str, action_id: str) -> str:
    return f"{rule}/{action_id}"


def encode_result(result: Any, sealer: Sealer | None = None) -> str:
    """A step's result as JSON text (ASCII); never raises: what cannot be encoded (a cycle,
    nesting past Python's limit) is recorded as its type, so the step still counts as done.

    A Secret in it (certs.issue's key, which a later step may need on a redelivery) is sealed
    under the ``[secrets]`` key; without a sealer it is recorded as the mask. Never in clear."""
    try:
        if sealer is not None:
            return sealer.encode(result)
        return json.dumps(result, default=lambda v: {SEALED: ""} if isinstance(v, Secret) else str(v))
    except (ValueError, TypeError, RecursionError):
        return json.dumps({"unserialisable": type(result).__name__})


#: Opens nothing: the decoder for a store kept without a key (every sealed value is unopened).
_NO_KEY = Sealer()

#: A recorded result holding a secret this process cannot open (sealed under another key, or
#: recorded without one): its step counts as not done and runs again, rather than hand a later
#: step the mask as the value (``***`` sent to SuperMQ as a device's key).
UNOPENED: Any = object()


def decode_result(text: str, sealer: Sealer | None) -> Any:
    """What ``encode_result`` wrote, sealed values Secrets again; ``UNOPENED`` (see there)."""
    try:
        return (sealer or _NO_KEY).decode(text, strict=True)
    except SealError:
        return UNOPENED


def _decoded_steps(rows: Iterable[tuple[str, str]], sealer: Sealer | None) -> Steps:
    decoded = ((step, decode_result(result, sealer)) for step, result in rows)
    return {step: result for step, result in decoded if result is not UNOPENED}


class StateStore(ABC):
    """Completed steps by event key (``stream/entry_id``)."""

    #: The daemon's stop (set by ``Reactor.run``): a backend's own retries give up on it.
    stop: asyncio.Event | None = None

    @abstractmethod
    async def completed(self, event_key: str) -> Steps:
        """``{"rule/action": result}`` for the steps of this event that completed."""

    @abstractmethod
    async def record(self, event_key: str, rule: str, action_id: str, result: Any) -> None:
        """Remember that a step completed: seen by ``completed`` at once, durable once ``flush``
        returns (or sooner: Redis and memory at once)."""

    async def accepting(self) -> None:  # noqa: B027 - optional
        """Called before a step with an effect runs: ``StateStoreError`` when the backend holds
        as many uncommitted records as it may and cannot commit them (the worker waits it out as
        an outage; no record is dropped, a dropped one would run its step again)."""

    async def flush(self) -> None:  # noqa: B027 - optional
        """Make every step recorded so far durable (the settler calls it before the acks of a
        batch); ``StateStoreError`` when the backend refuses (the steps stay pending)."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Release the backend."""


class MemoryStateStore(StateStore):
    def __init__(self) -> None:
        self.steps: dict[str, Steps] = {}

    async def completed(self, event_key: str) -> Steps:
        return dict(self.steps.get(event_key, {}))

    async def record(self, event_key: str, rule: str, action_id: str, result: Any) -> None:
        self.steps.setdefault(event_key, {})[step_key(rule, action_id)] = result


class SQLiteStateStore(StateStore):
    """A local SQLite file (WAL); old records are pruned as new ones are written.

    Records wait in memory (``completed`` sees them) and are written in one transaction at
    ``flush`` or ``commit_interval_s`` after the first of them: a commit writes the touched pages
    to the WAL (~25-40 µs on 2 cores), an insert in an open transaction ~4 µs. No transaction is
    held open across an await, so the audit trail's connection to the same file (and a CLI command
    in another process) never waits on ours. ``commit_interval_s = 0``: each record at once."""

    _PRUNE_EVERY = 1000
    #: Uncommitted records held at most while commits fail (then ``accepting`` refuses); past it
    #: only by the steps already running (at most ``worker.max_in_flight``).
    MAX_PENDING = 10_000
    _INSERT = "INSERT OR REPLACE INTO steps (event, step, result, at) VALUES (?, ?, ?, ?)"

    def __init__(
        self, path: Path, retention_s: float, sealer: Sealer | None = None, commit_interval_s: float = 0.005
    ) -> None:
        self._sealer = sealer
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS steps (event TEXT NOT NULL, step TEXT NOT NULL, result TEXT NOT NULL,"
            " at REAL NOT NULL, PRIMARY KEY (event, step))"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS steps_at ON steps (at)")
        self._checkpoints = off_the_loop(self._db, path)
        self._retention_s = retention_s
        self._writes = 0
        self._commit_interval_s = commit_interval_s
        self._pending: list[tuple[str, str, str, float]] = []
        self._max_pending = self.MAX_PENDING
        self._pending_by_event: dict[str, dict[str, str]] = {}
        self._timer: asyncio.TimerHandle | None = None

    async def completed(self, event_key: str) -> Steps:
        rows = self._db.execute("SELECT step, result FROM steps WHERE event = ?", (event_key,)).fetchall()
        pending = self._pending_by_event.get(event_key)
        if pending:
            rows = [*rows, *pending.items()]  # later: they replace what the file has
        return _decoded_steps(rows, self._sealer)

    async def record(self, event_key: str, rule: str, action_id: str, result: Any) -> None:
        step, text = step_key(rule, action_id), encode_result(result, self._sealer)
        self._pending.append((event_key, step, text, time.time()))
        self._pending_by_event.setdefault(event_key, {})[step] = text
        if not self._commit_interval_s:
            with contextlib.suppress(StateStoreError):  # pending: the next flush retries (and says)
                self._commit()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._commit_interval_s, self._commit_on_time)

    async def accepting(self) -> None:
        if len(self._pending) >= self._max_pending:
            self._commit()

    async def flush(self) -> None:
        self._commit()

    def _commit(self) -> None:
        """The pending records in one transaction; on an error (``StateStoreError``) they stay
        pending, for the next commit."""
        try:
            self._commit_pending()
        except sqlite3.Error as exc:
            raise StateStoreError(f"state store: committing completed steps: {exc}") from exc

    def _commit_pending(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        rows = self._pending
        if self._db.in_transaction:  # a ROLLBACK that failed: BEGIN would fail for good
            self._db.execute("ROLLBACK")
        self._db.execute("BEGIN")
        try:
            self._db.executemany(self._INSERT, rows)
            self._writes += len(rows)
            if self._writes >= self._PRUNE_EVERY:
                self._writes = 0
                self._db.execute("DELETE FROM steps WHERE at < ?", (rows[-1][3] - self._retention_s,))
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._pending = []
        self._pending_by_event = {}

    def _commit_on_time(self) -> None:
        """The interval's commit (a loop callback): on an error the records stay pending for the
        next ``flush``, which raises it if it persists."""
        self._timer = None
        with contextlib.suppress(StateStoreError):
            self._commit()

    async def close(self) -> None:
        try:
            self._commit()
        finally:
            self._checkpoints.close()
            self._db.close()


class RedisStateStore(StateStore):
    """One hash per event (``<prefix>:<event key>``), expiring after the retention window."""

    def __init__(
        self,
        client: aioredis.Redis,
        retention_s: float,
        prefix: str = "reactor:steps",
        sealer: Sealer | None = None,
    ) -> None:
        self._sealer = sealer
        self._client = client
        self._ttl = max(int(retention_s), 1)
        self._prefix = prefix

    async def completed(self, event_key: str) -> Steps:
        raw = await self._retrying(lambda: self._client.hgetall(f"{self._prefix}:{event_key}"))
        return _decoded_steps(((str(k), v) for k, v in raw.items()), self._sealer)

    async def record(self, event_key: str, rule: str, action_id: str, result: Any) -> None:
        key = f"{self._prefix}:{event_key}"
        value = encode_result(result, self._sealer)

        async def write() -> Any:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, step_key(rule, action_id), value)
                pipe.expire(key, self._ttl)
                return await pipe.execute()

        await self._retrying(write)

    async def _retrying(self, fn: Any, attempts: int = 50) -> Any:
        """A step that completed must be recorded: retry through a short Redis outage, then (or
        at once on stop) a ``StateStoreError``, which the worker waits out, honouring stop."""
        backoff = Backoff(self.stop, initial_s=0.05, max_s=1.0)
        for attempt in range(1, attempts + 1):
            try:
                return await fn()
            except RedisError as exc:
                if attempt == attempts or backoff.stopped:
                    raise StateStoreError(f"state store: {exc}") from exc
                with contextlib.suppress(StoppedError):
                    await backoff.wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self._client.aclose()
