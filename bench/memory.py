"""4. Memory: RSS of the process after 100,000 and after 1,000,000 events through the daemon's
loop as deployed (``Reactor.run``: decode, match, a no-op action, settle; log line, metrics, SQLite
audit and state store), generated on the fly. Target: growth under 10%."""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.common import NOOP_RULE, DeployedLog, Result, deployed_reactor, deployed_settings
from reactor.sources.base import DeadLetter, Delivery, Source

BATCH = 1000
RULES = NOOP_RULE


class Generated(Source):
    """An endless stream of distinct events, made as they are read; settled ones are forgotten."""

    name = "generated"

    def __init__(self, settled: Sequence[int], stop: asyncio.Event) -> None:
        self.n = 0
        self.done = 0
        self.marks: dict[int, float] = {}
        self._at = sorted(settled)
        self._stop = stop

    async def read(self, max_count: int, block_ms: int) -> list[Delivery]:
        if self.n >= self._at[-1]:  # all made: wait for the stop
            await asyncio.sleep(block_ms / 1000)
            return []
        out = []
        for _ in range(min(max_count, self._at[-1] - self.n)):
            self.n += 1
            out.append(
                Delivery(
                    "supermq.bootstrap",
                    f"{self.n}-0",
                    {
                        "operation": "config.create",
                        "thing_id": f"t{self.n % 5000}",
                        "state": "0",
                        "channels": f"[c{self.n % 7},c{self.n % 11}]",
                        "occurred_at": "1693313286544243035",
                    },
                )
            )
        return out

    async def settle(self, done: Sequence[Delivery], dead: Sequence[DeadLetter]) -> None:
        before, self.done = self.done, self.done + len(done)
        for mark in self._at:
            if before < mark <= self.done:
                gc.collect()
                self.marks[mark] = rss_mb()
        if self.done >= self._at[-1]:
            self._stop.set()


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def run(first: int = 100_000, second: int = 1_000_000) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        log = DeployedLog(Path(tmp))
        rules = Path(tmp) / "rules"
        rules.mkdir()
        (rules / "r.toml").write_text(RULES)
        settings = deployed_settings(
            Path(tmp),
            source="memory",
            rules={"dir": rules, "reload_interval_s": 0},
            worker={"batch_size": BATCH, "block_ms": 5},
        )
        stop = asyncio.Event()
        source = Generated((first, second), stop)
        reactor = deployed_reactor(settings, source, log)
        await reactor.run(stop)  # the daemon's loop; the source sets stop once all are settled
        marks = source.marks
        lines = log.lines()
        log.close()
    growth = marks[second] / marks[first] - 1
    return Result(
        f"4. Memory: RSS after {first:,} and after {second:,} events",
        {
            f"after {first:,}": f"{marks[first]:.1f} MiB",
            f"after {second:,}": f"{marks[second]:.1f} MiB",
            "growth": f"{growth:+.1%}",
            "log lines written": f"{lines:,} (JSON at INFO, to a file)",
        },
        ratio=marks[second] / marks[first],
        target="<= 1.10 (growth under 10%)",
        met=growth < 0.10,
    )


if __name__ == "__main__":
    print("\n".join(asyncio.run(run()).lines()))
