"""What the worker, the order gate and the settler share about one delivery in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass, field

from reactor.delivery.executor import RuleOutcome
from reactor.events.model import Event
from reactor.sources.base import DeadLetter, Delivery


@dataclass(slots=True)
class Outcome:
    """The settled result of one delivery."""

    delivery: Delivery
    event: Event | None
    rules: list[RuleOutcome] = field(default_factory=list)
    dead_letter: DeadLetter | None = None


@dataclass(slots=True)
class Item:
    """One delivery read and not yet settled: its outcome so far, and where it is on its way."""

    outcome: Outcome
    blockers: set[str] = field(default_factory=set)
    submitted: bool = False
    processed: asyncio.Event = field(default_factory=asyncio.Event)
    lane: Hashable = None
    finished_at: float = 0.0  # time.monotonic() when processed, waiting to be settled


#: The deliveries in flight, by (stream, entry id): the worker adds, the settler removes.
InFlight = dict[tuple[str, str], Item]
