"""4. Memory: RSS of the process after 100,000 and after 1,000,000 events through the pipeline
(decode, match, a no-op action, settle), generated on the fly. Target: growth under 10%."""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.common import NOOP_RULE, Result
from reactor.app import Reactor
from reactor.delivery.state import MemoryStateStore
from reactor.ops.logging import configure_logging, get_logger
from reactor.settings import load_settings
from reactor.sources.base import Delivery, Source
from reactor.sources.deadletter import DeadLetter

BATCH = 1000
RULES = NOOP_RULE


class Generated(Source):
    """An endless stream of distinct events, made as they are read; settled ones are forgotten."""

    name = "generated"

    def __init__(self) -> None:
        self.n = 0

    async def read(self, max_count: int, block_ms: int) -> list[Delivery]:
        out = []
        for _ in range(max_count):
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
        return None


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def run(first: int = 100_000, second: int = 1_000_000) -> Result:
    configure_logging("ERROR", "json")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "r.toml").write_text(RULES)
        settings = load_settings(
            None, source="memory", rules={"dir": tmp, "reload_interval_s": 0}, ops={"audit": False}
        )
        source = Generated()
        reactor = Reactor.build(settings, source, get_logger("bench"), state=MemoryStateStore())
        marks = {}
        while source.n < second:
            await reactor.worker.process(await source.read(BATCH, 0))
            if source.n in (first, second):
                gc.collect()
                marks[source.n] = rss_mb()
    growth = marks[second] / marks[first] - 1
    return Result(
        f"4. Memory: RSS after {first:,} and after {second:,} events",
        {
            f"after {first:,}": f"{marks[first]:.1f} MiB",
            f"after {second:,}": f"{marks[second]:.1f} MiB",
            "growth": f"{growth:+.1%}",
        },
        ratio=marks[second] / marks[first],
        target="<= 1.10 (growth under 10%)",
        met=growth < 0.10,
    )


if __name__ == "__main__":
    print("\n".join(asyncio.run(run()).lines()))
