"""Rule count: 1,000 rules (a handful can match) against 10 rules, same events, same run.

The pipeline measured is the worker's per-batch path without I/O: decode → candidates → conditions
→ a no-op action → outcome, fed from an in-memory source in batches of 500.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.common import Result, best_rate
from reactor.app import Reactor
from reactor.ops.logging import configure_logging, get_logger
from reactor.settings import load_settings
from reactor.sources.memory import MemorySource

EVENTS = 20_000
BATCH = 500
MATCHING = """
[[rule]]
name = "m{i}"
on = ["config.create"]
when = ["event.state == 0"]
[[rule.actions]]
type = "noop"
"""
OTHER = """
[[rule]]
name = "o{i}"
on = ["{op}"]
when = ["event.state == 1"]
[[rule.actions]]
type = "noop"
"""


def _rules(directory: Path, total: int, matching: int = 3) -> Path:
    directory.mkdir()
    parts = [MATCHING.format(i=i) for i in range(matching)]
    for i in range(total - matching):
        op = f"user.op{i}" if i % 4 else f"thing.x{i}.*"  # exact names and globs that cannot match
        parts.append(OTHER.format(i=i, op=op))
    (directory / "rules.toml").write_text("".join(parts))
    return directory


def _events() -> list[tuple[str, dict[str, str]]]:
    return [
        (
            "supermq.bootstrap",
            {
                "operation": "config.create",
                "thing_id": f"t{i % 500}",
                "state": "0",
                "channels": "[a,b]",
                "occurred_at": "1693313286544243035",
            },
        )
        for i in range(EVENTS)
    ]


async def _throughput(rules_dir: Path) -> float:
    """Best events/s of 3 runs; loading the rules is outside the timed part."""
    settings = load_settings(None, source="memory", rules={"dir": rules_dir, "reload_interval_s": 0})
    reactor = Reactor.build(settings, MemorySource(), get_logger("bench"))
    reactor.worker.settler._observers = []  # measure the pipeline, not the per-event log line
    events = _events()

    async def once() -> int:
        source = MemorySource(events)
        before = reactor.worker.counters.matched
        while batch := await source.read(BATCH, 0):
            await reactor.worker.process(batch)
        assert reactor.worker.counters.matched - before == 3 * EVENTS
        return EVENTS

    return await best_rate(once)


async def run() -> Result:
    configure_logging("ERROR", "json")
    with tempfile.TemporaryDirectory() as tmp:
        small = _rules(Path(tmp) / "r10", 10)
        large = _rules(Path(tmp) / "r1000", 1000)
        await _throughput(small)  # warm-up
        base = await _throughput(small)
        big = await _throughput(large)
        base = max(base, await _throughput(small))
        big = max(big, await _throughput(large))
    ratio = big / base
    return Result(
        "3. Rule count: 1,000 rules vs 10 (3 match each event)",
        {
            "10 rules": f"{base:,.0f} events/s",
            "1,000 rules": f"{big:,.0f} events/s",
            "events": f"{EVENTS:,} per run, batches of {BATCH}, best of 3",
        },
        ratio=ratio,
        target=">= 0.90",
        met=ratio >= 0.90,
    )


if __name__ == "__main__":
    print("\n".join(asyncio.run(run()).lines()))
