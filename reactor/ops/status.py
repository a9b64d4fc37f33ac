"""``reactor status``: what the reactor is doing, at a glance (or as JSON for scripts)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import aio_pika
import redis.asyncio as aioredis
from aio_pika.exceptions import AMQPError, ChannelNotFoundEntity
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError
from redis.exceptions import RedisError

from reactor.actions.base import ActionRegistry
from reactor.delivery.dlq import DeadLetters, DeadLetterStore
from reactor.delivery.dlq_nats import NatsDeadLetters
from reactor.errors import RuleSetError, SourceError
from reactor.ops.audit import AuditStore
from reactor.provision.commands import provision_summary
from reactor.redact import redact_text, shown_url
from reactor.rules.loader import load_rules
from reactor.settings import Settings
from reactor.sources.redis_discovery import StreamDiscovery


@dataclass
class StreamStatus:
    stream: str
    group: str
    exists: bool
    lag: int | None = None
    pending: int = 0
    oldest_pending_s: float | None = None
    consumers: int | None = 0  # None: the event store does not say
    pattern: str | None = None  # the ``redis.streams`` glob pattern that found the stream


@dataclass
class Status:
    streams: list[StreamStatus] = field(default_factory=list)
    dead_letters: int = 0
    rules_loaded: int = 0
    rules_errors: list[str] = field(default_factory=list)
    last_errors: list[dict[str, Any]] = field(default_factory=list)
    #: Zero-touch provisioning (reactor.provision.commands.provision_summary); empty when off.
    provisioning: dict[str, Any] = field(default_factory=dict)


async def _stream_status(client: aioredis.Redis, stream: str, group: str) -> StreamStatus:
    try:
        groups = await client.xinfo_groups(stream)
    except RedisError:
        return StreamStatus(stream, group, exists=False)
    info = next((g for g in groups if str(g["name"]) == group), None)
    if info is None:
        return StreamStatus(stream, group, exists=False)
    status = StreamStatus(
        stream,
        group,
        True,
        None if info.get("lag") is None else int(info["lag"]),
        int(info["pending"]),
        None,
        int(info["consumers"]),
    )
    if status.pending:
        oldest = await client.xpending_range(stream, group, min="-", max="+", count=1)
        if oldest:
            status.oldest_pending_s = int(oldest[0]["time_since_delivered"]) / 1000
    return status


async def gather(
    settings: Settings, client: aioredis.Redis | None, registry: ActionRegistry, audit: AuditStore | None
) -> Status:
    """Status of the configured event store (``client``: the Redis one, when that is the store)."""
    status = Status()
    if settings.source == "nats":
        await _nats_into(status, settings)
    elif settings.source == "rabbitmq":
        await _rabbit_into(status, settings)
    else:
        assert client is not None
        await _redis_into(status, settings, client)
    try:
        status.rules_loaded = len(load_rules(settings.rules.dir, registry))
    except RuleSetError as exc:
        status.rules_errors = [str(e) for e in exc.errors]
    if audit is not None:
        for row in await audit.query(failed_only=True, limit=5):
            status.last_errors.append(
                {
                    "at_ns": row.at_ns,
                    "where": "action",
                    "stream": row.stream,
                    "entry_id": row.entry_id,
                    "rule": row.rule,
                    "action": row.action,
                    "error": row.error,
                }
            )
    status.last_errors.sort(key=lambda e: e["at_ns"], reverse=True)
    status.provisioning = await provision_summary(settings, audit)
    return status


async def _redis_into(status: Status, settings: Settings, client: aioredis.Redis) -> None:
    try:
        s = settings.redis
        found = StreamDiscovery(s.streams, frozenset({s.dlq_stream}), s.max_streams, s.scan_count)
        await found.scan(client)
        for stream in found.streams:
            status.streams.append(await _stream_status(client, stream, s.group))
            status.streams[-1].pattern = found.found.get(stream)
        for pattern in found.patterns:
            if pattern not in found.found.values():
                status.streams.append(StreamStatus(pattern, s.group, exists=False, pattern=pattern))
        await _dead_letters_into(status, DeadLetters(client, settings.redis.dlq_stream))
    except RedisError as exc:
        raise SourceError(f"redis {shown_url(settings.redis.url)}: {exc}") from exc


async def _nats_into(status: Status, settings: Settings) -> None:
    """The durable consumer's backlog (not yet delivered) and unacked count, and the DLQ stream."""
    s = settings.nats
    dead = await NatsDeadLetters.connect(s)
    try:
        js = dead.jetstream
        try:
            info = await js.consumer_info(s.stream, s.durable)
            status.streams.append(
                StreamStatus(
                    s.stream, s.durable, True, int(info.num_pending), int(info.num_ack_pending), None, None
                )
            )
        except NotFoundError:
            status.streams.append(StreamStatus(s.stream, s.durable, exists=False))
        await _dead_letters_into(status, dead)
    except (NatsError, OSError) as exc:
        raise SourceError(f"nats {shown_url(s.url)}: {exc}") from exc
    finally:
        await dead.close()


async def _rabbit_into(status: Status, settings: Settings) -> None:
    """The queue's ready messages and consumers, and the dead-letter queue's length."""
    s = settings.rabbitmq
    try:
        connection = await aio_pika.connect(s.url, timeout=5)
    except (AMQPError, OSError) as exc:
        raise SourceError(f"rabbitmq: {exc}") from exc
    try:
        for name, dlq in ((s.queue, False), (s.dlq_queue, True)):
            channel = await connection.channel()  # a failed passive declare closes its channel
            try:
                queue = await channel.declare_queue(name, passive=True)
            except ChannelNotFoundEntity:
                if not dlq:
                    status.streams.append(StreamStatus(name, s.queue, exists=False))
                continue
            result = queue.declaration_result
            if dlq:
                status.dead_letters = int(result.message_count or 0)
            else:
                count = int(result.message_count or 0)
                status.streams.append(
                    StreamStatus(name, s.queue, True, count, 0, None, result.consumer_count)
                )
    except AMQPError as exc:
        raise SourceError(f"rabbitmq: {exc}") from exc
    finally:
        await connection.close()


async def _dead_letters_into(status: Status, dead: DeadLetterStore) -> None:
    """How many records the store keeps, and its newest five among the last errors."""
    status.dead_letters = await dead.count()
    for record in await dead.records(limit=5):
        f = record.fields
        status.last_errors.append(
            {
                "at_ns": record.at_ns,
                "where": "dead-letter",
                "stream": f.get("stream"),
                "entry_id": f.get("entry_id"),
                "rule": f.get("rule"),
                "action": f.get("action"),
                "error": redact_text(f.get("error") or ""),  # a record of an older writer too
            }
        )


def print_status(status: Status, out: TextIO, *, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(asdict(status), indent=2, sort_keys=True), file=out)
        return
    print(
        f"{'stream':<36} {'group':<14} {'lag':>8} {'pending':>8} {'oldest pending':>15} {'consumers':>10}",
        file=out,
    )
    for s in status.streams:
        if not s.exists:
            missing = (
                "(no stream matches the pattern)" if s.stream == s.pattern else "(no such stream or group)"
            )
            print(f"{s.stream:<36} {s.group:<14} {missing:>44}", file=out)
            continue
        lag = "?" if s.lag is None else str(s.lag)
        oldest = "-" if s.oldest_pending_s is None else f"{s.oldest_pending_s:.1f}s"
        consumers = "?" if s.consumers is None else str(s.consumers)
        found = f"  (matched by {s.pattern})" if s.pattern else ""
        print(
            f"{s.stream:<36} {s.group:<14} {lag:>8} {s.pending:>8} {oldest:>15} {consumers:>10}{found}",
            file=out,
        )
    print(f"\ndead-letter records: {status.dead_letters}", file=out)
    if status.rules_errors:
        print(
            f"rules: INVALID ({len(status.rules_errors)} error(s)); first: {status.rules_errors[0]}", file=out
        )
    else:
        print(f"rules loaded: {status.rules_loaded}", file=out)
    if status.provisioning:
        print(f"provisioning: {_provisioning(status.provisioning)}", file=out)
    if status.last_errors:
        print("last errors:", file=out)
        for e in status.last_errors[:5]:
            where = f"{e['stream']} {e['entry_id']}"
            what = f"{e.get('rule') or ''} {e.get('action') or ''}".strip() or "-"
            print(f"  [{e['where']}] {where}  {what}: {e['error']}", file=out)


def _provisioning(summary: dict[str, Any]) -> str:
    if "error" in summary:
        return f"INVALID: {summary['error']}"
    line = (
        f"{summary['enrollments']} enrollments, {summary['groups']} groups, {summary['templates']} templates"
    )
    if summary.get("inventory"):
        line += ", an inventory"
    if "provisioned_today" in summary:
        line += (
            f"; today: {summary['provisioned_today']} provisioned, {summary['refused_today']} refused, "
            f"{summary['failed_today']} failed"
        )
    return line
