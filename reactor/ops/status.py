"""``reactor status``: what the reactor is doing, at a glance (or as JSON for scripts)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import redis.asyncio as aioredis

from reactor.actions.base import ActionRegistry
from reactor.app import build_source
from reactor.errors import RuleSetError
from reactor.ops.audit import AuditStore
from reactor.provision.commands import provision_summary
from reactor.redact import redact_text
from reactor.rules.loader import load_rules
from reactor.settings import Settings
from reactor.sources.base import DeadLetterStore, StreamStatus
from reactor.sources.redis_streams import RedisStreamsSource

__all__ = ["Status", "StreamStatus", "gather", "print_status"]


@dataclass
class Status:
    streams: list[StreamStatus] = field(default_factory=list)
    dead_letters: int = 0
    rules_loaded: int = 0
    rules_errors: list[str] = field(default_factory=list)
    last_errors: list[dict[str, Any]] = field(default_factory=list)
    #: Zero-touch provisioning (reactor.provision.commands.provision_summary); empty when off.
    provisioning: dict[str, Any] = field(default_factory=dict)


async def gather(
    settings: Settings, client: aioredis.Redis | None, registry: ActionRegistry, audit: AuditStore | None
) -> Status:
    """Status of the configured event store, from its status and dead-letter faces (``client``:
    the Redis one, when that is the store)."""
    status = Status()
    store = build_source(settings)
    if settings.source == "redis" and client is not None:
        store = RedisStreamsSource(settings.redis, client)
    faces = await store.status()  # never started: nothing to close but what it opens itself
    status.streams, status.dead_letters = faces.streams, faces.dead_letters
    dead = await store.open_dead_letters()
    try:
        await _dead_letters_into(status, dead)
    finally:
        await dead.close()
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


async def _dead_letters_into(status: Status, dead: DeadLetterStore) -> None:
    """The store's newest five records among the last errors."""
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
