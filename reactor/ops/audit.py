"""The audit trail: every rule firing, each action with its rendered parameters (masked), outcome,
attempts and duration. Stored beside the state store (SQLite by default; a capped Redis stream
for several processes; memory for the demo) and read by ``reactor history``.

Retention: rows older than ``ops.audit_retention_s`` and all but the newest ``ops.audit_max_rows``
are pruned by ``keep_pruned``, a task of its own every ``PRUNE_INTERVAL_S`` (never on the path of
an event), in batches of ``PRUNE_BATCH`` rows with the loop polled between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import operator
import sqlite3
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.exceptions import RedisError

from reactor.delivery.executor import StepOutcome
from reactor.delivery.outcome import Outcome
from reactor.delivery.wal import off_the_loop
from reactor.errors import SourceError
from reactor.redact import MASK, redact, redact_json_text, redact_text, utf8_safe
from reactor.secrets import revealed_values

#: How often the trail is pruned, and how many rows one DELETE removes at most (the loop polls between).
PRUNE_INTERVAL_S = 60.0
PRUNE_BATCH = 1000
_NS_PER_S = 1_000_000_000

#: One encoder for every row (json.dumps with arguments builds a new one per call).
_ENCODE = json.JSONEncoder(sort_keys=True, default=str).encode


@dataclass(frozen=True, slots=True)
class AuditRow:
    at_ns: int
    stream: str
    entry_id: str
    device: str
    operation: str
    rule: str
    action: str
    type: str
    params: str
    outcome: str
    attempts: int
    duration_ms: float
    error: str


@dataclass(frozen=True)
class AuditQuery:
    """Which rows: by device, entry id, rule, time, failures only; the newest ``limit``."""

    device: str | None = None
    entry_id: str | None = None
    rule: str | None = None
    since_ns: int | None = None
    failed_only: bool = False
    limit: int = 1000

    def matches(self, row: AuditRow) -> bool:
        return (
            (self.device is None or row.device == self.device)
            and (self.entry_id is None or row.entry_id == self.entry_id)
            and (self.rule is None or row.rule == self.rule)
            and (self.since_ns is None or row.at_ns >= self.since_ns)
            and (not self.failed_only or row.outcome == "failed")
        )


#: The text of an action's static parameters (validated at load, the same object every event),
#: masked with no event secrets: (the parameters, their text) by id. Parameters rendered per event
#: are never cached (they would hold what events carry). The object is held, so its id is not
#: reused while cached; bounded by the rules' actions, cleared when full (after reloads).
_STATIC_PARAMS: dict[int, tuple[Any, str]] = {}
_STATIC_PARAMS_MAX = 1024


def _params(step: StepOutcome, secrets: frozenset[str]) -> str:
    if step.params is None:
        return "{}"
    if secrets or not step.static:
        return _params_text(step.params, step.secret_params, secrets)
    cached = _STATIC_PARAMS.get(id(step.params))
    if cached is not None and cached[0] is step.params:
        return cached[1]
    text = _params_text(step.params, step.secret_params, secrets)
    if len(_STATIC_PARAMS) >= _STATIC_PARAMS_MAX:
        _STATIC_PARAMS.clear()
    _STATIC_PARAMS[id(step.params)] = (step.params, text)
    return text


def _params_text(step_params: Any, secret: Iterable[str], secrets: frozenset[str]) -> str:
    values = step_params.model_dump() if isinstance(step_params, BaseModel) else dict(step_params)
    for name in secret:
        if values.get(name):
            values[name] = MASK
    return _ENCODE(redact(values, secrets=secrets))


def rows_for(outcome: Outcome) -> list[AuditRow]:
    """One row per action of every rule that fired for this event."""
    event = outcome.event
    if event is None:
        return []
    at = time.time_ns()
    rows = []
    for rule in outcome.rules:
        secrets = event.secrets
        if rule.failed is not None:  # its error may quote a secret an earlier step returned
            secrets = secrets | revealed_values([s.result for s in rule.steps if s.result])
        for step in [*rule.steps, *rule.fallback]:
            result = "skipped" if step.skipped else "success" if step.ok else "failed"
            rows.append(
                AuditRow(  # every text encodable as UTF-8, whatever the event held (lone surrogates)
                    at,
                    utf8_safe(event.stream),
                    utf8_safe(event.entry_id),
                    utf8_safe(event.device or ""),
                    utf8_safe(event.operation),
                    rule.rule,
                    step.action_id,
                    step.type,
                    _params(step, secrets),
                    result,
                    step.attempts,
                    round(step.duration_s * 1000, 3),
                    redact_text(step.error or "", secrets),
                )
            )
    return rows


class AuditStore(ABC):
    @abstractmethod
    async def write(self, rows: Sequence[AuditRow]) -> None: ...

    async def query(
        self,
        *,
        device: str | None = None,
        entry_id: str | None = None,
        rule: str | None = None,
        since_ns: int | None = None,
        failed_only: bool = False,
        limit: int = 1000,
    ) -> list[AuditRow]:
        """Rows, oldest first (the newest ``limit`` of them)."""
        return await self._query(AuditQuery(device, entry_id, rule, since_ns, failed_only, limit))

    @abstractmethod
    async def _query(self, q: AuditQuery) -> list[AuditRow]: ...

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        """A worker sink: audit the settled outcomes."""
        rows = [row for outcome in outcomes for row in rows_for(outcome)]
        if rows:
            await self.write(rows)

    async def prune(self, now_ns: int | None = None) -> int:
        """Remove the rows past the retention and the row cap; how many went (0: kept bounded
        otherwise)."""
        return 0

    async def close(self) -> None:  # noqa: B027 - optional
        """Release the backend."""


async def keep_pruned(
    audit: AuditStore,
    stop: asyncio.Event,
    logger: Any,
    interval_s: float = PRUNE_INTERVAL_S,
) -> None:
    """Prune the trail at start and every ``interval_s`` until ``stop`` (a task of its own)."""
    while not stop.is_set():
        try:
            removed = await audit.prune()
        except (SourceError, sqlite3.Error) as exc:  # tried again next time; writes say the rest
            await logger.awarning("audit.prune_failed", error=str(exc), retry_in_s=interval_s)
        else:
            if removed:
                await logger.ainfo("audit.pruned", rows=removed)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


class MemoryAudit(AuditStore):
    """The newest ``keep`` rows in memory (demo, tests, source = "memory"): bounded, so a
    long run neither grows without end nor makes every full collection walk a million rows."""

    def __init__(self, keep: int = 10_000, retention_s: float | None = None) -> None:
        self.rows: deque[AuditRow] = deque(maxlen=keep)
        self._retention_ns = None if retention_s is None else int(retention_s * _NS_PER_S)

    async def prune(self, now_ns: int | None = None) -> int:
        if self._retention_ns is None:
            return 0
        cutoff = (now_ns if now_ns is not None else time.time_ns()) - self._retention_ns
        removed = 0
        while self.rows and self.rows[0].at_ns < cutoff:
            self.rows.popleft()
            removed += 1
        return removed

    async def write(self, rows: Sequence[AuditRow]) -> None:
        self.rows.extend(rows)

    async def _query(self, q: AuditQuery) -> list[AuditRow]:
        return [r for r in self.rows if q.matches(r)][-q.limit :]


_COLUMNS = [f.name for f in fields(AuditRow)]
_VALUES = operator.attrgetter(*_COLUMNS)  # a row's column values, as a tuple
_INSERT = f"INSERT INTO audit VALUES ({','.join('?' * len(_COLUMNS))})"  # noqa: S608 - placeholders only


class SQLiteAudit(AuditStore):
    """A table in the state store's SQLite file; rows are inserted in time order (rowid order).

    A batch is inserted on the event loop's thread, not in a thread of its own: the SQLite state
    store writes to the same file from the loop, and a step record that met an insert in
    progress would wait out SQLite's busy handler (1 ms, 2 ms, 5 ms, ...) holding the loop."""

    def __init__(self, path: Path, retention_s: float = 7 * 86_400.0, max_rows: int = 1_000_000) -> None:
        self._retention_ns = int(retention_s * _NS_PER_S)
        self._max_rows = max_rows
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # As the state store's connection to the same file: a commit is written to the WAL, not
        # synced (a killed process loses nothing; the OS crashing, the last commits). FULL synced
        # the WAL at each settled batch, on the event loop: 0.4 against 0.14 ms for 18 rows idle,
        # 2.7 ms median with the disk shared (the latency benchmark).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._checkpoints = off_the_loop(self._db, path)  # their syncs never stall the event loop
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS audit (at_ns INTEGER, stream TEXT, entry_id TEXT, device TEXT,"
            " operation TEXT, rule TEXT, action TEXT, type TEXT, params TEXT, outcome TEXT, attempts INTEGER,"
            " duration_ms REAL, error TEXT)"
        )
        for column in ("device", "entry_id", "rule", "at_ns"):
            self._db.execute(f"CREATE INDEX IF NOT EXISTS audit_{column} ON audit ({column})")

    async def write(self, rows: Sequence[AuditRow]) -> None:
        values = list(map(_VALUES, rows))
        # One transaction per batch: autocommitted, each row was a WAL commit of its own.
        self._db.execute("BEGIN")
        try:
            self._db.executemany(_INSERT, values)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def _query(self, q: AuditQuery) -> list[AuditRow]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("device", q.device), ("entry_id", q.entry_id), ("rule", q.rule)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if q.since_ns is not None:
            where.append("at_ns >= ?")
            args.append(q.since_ns)
        if q.failed_only:
            where.append("outcome = 'failed'")
        clause = f"WHERE {' AND '.join(where)}" if where else ""  # fixed column names, values bound
        sql = f"SELECT * FROM audit {clause} ORDER BY rowid DESC LIMIT ?"  # noqa: S608
        rows = self._db.execute(sql, [*args, q.limit]).fetchall()
        return [AuditRow(*row) for row in reversed(rows)]

    async def prune(self, now_ns: int | None = None) -> int:
        """Past the retention, then past the row cap: the oldest rows, in batches."""
        cutoff_ns = (now_ns if now_ns is not None else time.time_ns()) - self._retention_ns
        old = self._db.execute(
            "SELECT rowid FROM audit WHERE at_ns < ? ORDER BY at_ns DESC, rowid DESC LIMIT 1", (cutoff_ns,)
        ).fetchone()
        (newest,) = self._db.execute("SELECT max(rowid) FROM audit").fetchone()
        last = max(old[0] if old else 0, (newest or 0) - self._max_rows)
        return await self._delete_through(last)

    async def _delete_through(self, last: int) -> int:
        """Delete rowid <= ``last`` (the rows before are older), ``PRUNE_BATCH`` at a time."""
        removed = 0
        while last > 0:
            (first,) = self._db.execute("SELECT min(rowid) FROM audit").fetchone()
            if first is None or first > last:
                break
            cursor = self._db.execute(
                "DELETE FROM audit WHERE rowid <= ?", (min(last, first + PRUNE_BATCH - 1),)
            )
            removed += cursor.rowcount
            await asyncio.sleep(0)  # the loop polls between batches
        return removed

    async def close(self) -> None:
        self._checkpoints.close()
        self._db.close()


class RedisAudit(AuditStore):
    """A capped stream; queries scan it (the trail of several processes in one place)."""

    def __init__(
        self, client: aioredis.Redis, stream: str, maxlen: int = 1_000_000, retention_s: float = 7 * 86_400.0
    ) -> None:
        self._client = client
        self._stream = stream
        self._maxlen = maxlen
        self._retention_ms = int(retention_s * 1000)

    async def prune(self, now_ns: int | None = None) -> int:
        """Entries older than the retention (stream ids are the milliseconds they were added at)."""
        now_ms = (now_ns if now_ns is not None else time.time_ns()) // 1_000_000
        try:
            removed: Any = await self._client.xtrim(
                self._stream, minid=str(max(now_ms - self._retention_ms, 0)), approximate=False
            )
        except RedisError as exc:
            raise SourceError(f"audit: {exc}") from exc
        return int(removed)

    async def write(self, rows: Sequence[AuditRow]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for row in rows:
                    values: dict[Any, Any] = {k: str(v) for k, v in asdict(row).items()}
                    pipe.xadd(self._stream, values, maxlen=self._maxlen, approximate=True)
                await pipe.execute()
        except RedisError as exc:
            raise SourceError(f"audit: {exc}") from exc

    async def _query(self, q: AuditQuery) -> list[AuditRow]:
        raw: Any = await self._client.xrevrange(self._stream, count=100_000)
        found = []
        for _, values in raw:
            row = _typed(AuditRow(**{name: values[name] for name in _COLUMNS}))
            if q.matches(row):
                found.append(row)
                if len(found) >= q.limit:
                    break
        return list(reversed(found))

    async def close(self) -> None:
        await self._client.aclose()


def _typed(row: AuditRow) -> AuditRow:
    return AuditRow(
        int(row.at_ns),
        row.stream,
        row.entry_id,
        row.device,
        row.operation,
        row.rule,
        row.action,
        row.type,
        row.params,
        row.outcome,
        int(row.attempts),
        float(row.duration_ms),
        row.error,
    )


def print_history(rows: Sequence[AuditRow], out: TextIO) -> None:
    """A readable timeline: each event, then the actions its rules ran."""
    if not rows:
        print("no audit records match", file=out)
        return
    current = None
    for row in rows:
        key = (row.stream, row.entry_id)
        if key != current:
            current = key
            at = datetime.fromtimestamp(row.at_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            print(f"{at}  {row.stream} {row.entry_id}  {row.operation}  device={row.device or '-'}", file=out)
        tries = f"{row.attempts} attempt{'s' if row.attempts != 1 else ''}"
        # Masked again: a row an older version wrote may hold what it did not mask.
        error = f"  error: {redact_text(row.error)}" if row.error else ""
        print(
            f"    {row.rule} / {row.action} ({row.type}): {row.outcome}, {tries}, {row.duration_ms:.1f} ms"
            f"  {redact_json_text(row.params)}{error}",
            file=out,
        )
