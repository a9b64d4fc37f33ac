"""Hot reload: a running worker picks up new rules between events, keeps the old set when invalid."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

from reactor.app import Reactor, install_signal_handlers
from reactor.delivery.outcome import Outcome
from reactor.ops.logging import get_logger
from reactor.settings import load_settings
from reactor.sources.memory import MemorySource

RULE = """
[[rule]]
name = "{name}"
on = ["config.create"]
[[rule.actions]]
type = "noop"
"""


async def _wait(predicate: object, timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def _push(source: MemorySource, n: int, start: int) -> None:
    for i in range(start, start + n):
        source.add("supermq.bootstrap", {"operation": "config.create", "thing_id": f"t{i % 7}", "n": str(i)})


async def test_new_rule_is_picked_up_without_losing_or_repeating_events(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.toml").write_text(RULE.format(name="a"))
    settings = load_settings(
        None, source="memory", rules={"dir": rules, "reload_interval_s": 0.02}, redis={"block_ms": 10}
    )
    source = MemorySource(finite=False)
    outcomes: list[Outcome] = []
    reactor = Reactor.build(settings, source, get_logger("test"), observers=[outcomes.append])
    stop = asyncio.Event()
    task = asyncio.create_task(reactor.run(stop))

    _push(source, 50, 0)
    await _wait(lambda: len(outcomes) == 50)
    (rules / "b.toml").write_text(RULE.format(name="b"))
    await _wait(lambda: reactor.holder.reloads == 1)
    _push(source, 50, 50)
    await _wait(lambda: len(outcomes) == 100)

    (rules / "c.toml").write_text("[[rule]]\nname = 'broken'\n")  # invalid: the old set stays
    await _wait(lambda: reactor.holder.last_error is not None)
    assert "c.toml:1: rule 'broken'" in (reactor.holder.last_error or "")
    _push(source, 20, 100)
    await _wait(lambda: len(outcomes) == 120)
    stop.set()
    await task

    entry_ids = Counter(o.delivery.entry_id for o in outcomes)
    assert len(entry_ids) == 120
    assert set(entry_ids.values()) == {1}, "an event was processed twice"
    assert len(source.acked) == 120
    by_n = {int(o.event.fields["n"]): [r.rule for r in o.rules] for o in outcomes if o.event}
    assert all(by_n[i] == ["a"] for i in range(50))
    assert all(by_n[i] == ["a", "b"] for i in range(50, 120))
    assert reactor.holder.reloads == 1
    assert len(reactor.rules) == 2


async def test_sighup_reloads(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.toml").write_text(RULE.format(name="a"))
    settings = load_settings(None, source="memory", rules={"dir": rules, "reload_interval_s": 0})
    reactor = Reactor.build(settings, MemorySource(), get_logger("test"))
    stop = asyncio.Event()
    install_signal_handlers(stop, reactor.holder)
    try:
        (rules / "b.toml").write_text(RULE.format(name="b"))
        os.kill(os.getpid(), signal.SIGHUP)
        await _wait(lambda: reactor.holder.reloads == 1)
        assert [r.name for r in reactor.rules.rules] == ["a", "b"]
    finally:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
