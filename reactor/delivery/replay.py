"""Replay and backfill: put recorded events back through the rules.

``reactor replay FILE`` (JSON lines, NATS ``Subject:`` blocks, ``redis-cli XRANGE`` output) or
``reactor replay --stream S --from ID|TIME --to ID|TIME``: a dry run by default (what would
match, per rule), ``--apply`` to act — as redeliveries of their original entries, so the steps
that completed before are skipped. ``reactor backfill --group G``: a new consumer group from the
beginning of the streams, run until it has caught up, to rebuild what the rules should have done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from reactor.errors import ConfigError, DecodeError, SourceError
from reactor.events.decode import Decoder
from reactor.events.textforms import entries_from_file
from reactor.rules.dryrun import dry_run
from reactor.rules.ruleset import RuleSet
from reactor.sources.base import Delivery

Progress = Callable[[int, int], None]


@dataclass
class ReplaySummary:
    events: int = 0
    malformed: int = 0
    matched: Counter[str] = field(default_factory=Counter)
    acted: int = 0
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)


def deliveries_from_file(path: Path, stream: str) -> list[Delivery]:
    """The events of a file as redeliveries (their completed steps are skipped on --apply)."""
    return [Delivery(e.stream, e.entry_id, e.payload, deliveries=2) for e in entries_from_file(path, stream)]


def _stream_id(text: str, end: bool) -> str:
    """An entry id as given, or an ISO time as the first/last id of that millisecond."""
    if text in ("-", "+") or text.replace("-", "").isdigit():
        return text
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--from/--to: not a stream id or an ISO time: {text!r}") from None
    millis = int(moment.timestamp() * 1000)
    return f"{millis}-{'18446744073709551615' if end else '0'}"


async def deliveries_from_stream(client: aioredis.Redis, stream: str, start: str, end: str) -> list[Delivery]:
    try:
        entries: Any = await client.xrange(stream, _stream_id(start, False), _stream_id(end, True))
    except RedisError as exc:
        raise SourceError(f"XRANGE {stream}: {exc}") from exc
    return [Delivery(stream, str(entry_id), dict(fields), deliveries=2) for entry_id, fields in entries]


def dry_run_all(
    deliveries: Sequence[Delivery], rules: RuleSet, decoder: Decoder, progress: Progress | None = None
) -> ReplaySummary:
    """What would match, per rule; nothing runs."""
    summary = ReplaySummary()
    for n, delivery in enumerate(deliveries, 1):
        summary.events += 1
        try:
            event = decoder.decode(
                delivery.payload, source="replay", stream=delivery.stream, entry_id=delivery.entry_id
            )
        except DecodeError as exc:
            summary.malformed += 1
            summary.errors.append(str(exc))
        else:
            summary.matched.update(r.rule for r in dry_run(rules, event) if r.matched)
        if progress is not None:
            progress(n, len(deliveries))
    return summary


def print_replay(summary: ReplaySummary, out: TextIO, *, applied: bool) -> None:
    print(
        ("applied" if applied else "dry run (use --apply to act)") + f": {summary.events} event(s), "
        f"{summary.malformed} malformed",
        file=out,
    )
    for rule, count in summary.matched.most_common():
        print(f"  {rule:<40}{count:>8}", file=out)
    if applied:
        print(f"  acted on: {summary.acted}, dead-lettered: {summary.dead_lettered}", file=out)
    for error in summary.errors[:10]:
        print(f"  - {error}", file=out)


async def wait_caught_up(
    client: aioredis.Redis,
    streams: Sequence[str],
    group: str,
    stop: asyncio.Event,
    progress: Progress | None = None,
    poll_s: float = 0.2,
) -> None:
    """Until ``group`` exists on every stream (the source creates it, however long its start takes)
    and has no lag and nothing pending; then ``stop`` is set. Returns early if ``stop`` is set."""
    while not stop.is_set():
        remaining, total = await _behind(client, streams, group)
        if progress is not None and remaining is not None:
            progress(total - remaining, total)
        if remaining == 0:
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_s)


async def _behind(client: aioredis.Redis, streams: Sequence[str], group: str) -> tuple[int | None, int]:
    """Entries ``group`` has still to read or settle (None while it is not on every stream yet),
    and the streams' total length."""
    remaining, total = 0, 0
    for stream in streams:
        try:
            groups = await client.xinfo_groups(stream)
            length = int(await client.xlen(stream))
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None, total  # the stream is created with the group
            raise SourceError(f"XINFO GROUPS {stream}: {exc}") from exc
        except RedisError as exc:
            raise SourceError(f"XINFO GROUPS {stream}: {exc}") from exc
        info = next((g for g in groups if str(g["name"]) == group), None)
        if info is None:
            return None, total
        total += length
        remaining += int(info.get("lag") or 0) + int(info["pending"])
    return remaining, total
