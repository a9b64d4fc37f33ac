"""The ``[events]`` bounds are the daemon's: ``Reactor.build`` decodes with what the settings say."""

from __future__ import annotations

import asyncio

from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.ops.logging import get_logger
from reactor.settings import load_settings
from reactor.sources.memory import MemorySource
from tests.conftest import REPO


async def test_a_configured_bound_is_applied_by_the_daemon() -> None:
    settings = load_settings(
        None,
        source="memory",
        rules={"dir": REPO / "rules", "reload_interval_s": 0},
        events={"max_name_chars": 40},
    )
    long_id = "x" * 41  # within the default bound (256), past the configured one
    source = MemorySource([("supermq.bootstrap", {"operation": "config.update", "thing_id": long_id})])
    outcomes: list[Outcome] = []
    reactor = Reactor.build(settings, source, get_logger("test"), observers=[outcomes.append])
    await asyncio.wait_for(reactor.run(asyncio.Event()), 20)
    [outcome] = outcomes
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.reason == "malformed"
