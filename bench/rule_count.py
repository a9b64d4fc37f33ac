"""Rule count: 1,000 rules (a handful can match) against 10 rules, same events, same run.

The path measured is the daemon's (``Reactor.run`` with the deployed observers: log line,
metrics, SQLite audit): decode → candidates → conditions → a no-op action → settle, fed from an
in-memory source in batches of 500.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import DeployedLog, Result, deployed_reactor, deployed_settings, spread
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


async def _throughput(rules_dir: Path, log: DeployedLog) -> float:
    """Events/s of one run of the daemon's loop; loading the rules is outside the timed part."""
    _RUNS[0] += 1
    settings = deployed_settings(
        rules_dir / f"run{_RUNS[0]}",
        source="memory",
        rules={"dir": rules_dir, "reload_interval_s": 0},
        worker={"batch_size": BATCH},
    )
    reactor = deployed_reactor(settings, MemorySource(_events()), log)
    started = time.perf_counter()
    await reactor.run(asyncio.Event())  # returns when the finite source is done
    rate = EVENTS / (time.perf_counter() - started)
    assert reactor.worker.counters.matched == 3 * EVENTS, vars(reactor.worker.counters)
    return rate


_RUNS = [0]


async def run() -> Result:
    bases: list[float] = []
    bigs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        log = DeployedLog(Path(tmp))
        small = _rules(Path(tmp) / "r10", 10)
        large = _rules(Path(tmp) / "r1000", 1000)
        await _throughput(small, log)  # warm-up
        for _ in range(3):  # in turns
            bases.append(await _throughput(small, log))
            bigs.append(await _throughput(large, log))
        log.close()
    base, big = max(bases), max(bigs)
    ratio = big / base
    return Result(
        "3. Rule count: 1,000 rules vs 10 (3 match each event)",
        {
            "10 rules": f"{base:,.0f} events/s ({spread(bases)})",
            "1,000 rules": f"{big:,.0f} events/s ({spread(bigs)})",
            "events": f"{EVENTS:,} per run, batches of {BATCH}, the daemon's loop as deployed, best of 3 "
            "taken in turns",
        },
        ratio=ratio,
        target=">= 0.95",
        met=ratio >= 0.95,
    )


if __name__ == "__main__":
    print("\n".join(asyncio.run(run()).lines()))
