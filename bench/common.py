"""Benchmark plumbing: results as ratios against a baseline measured in the same run."""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The rule the pipeline benchmarks run: one condition and a no-op action, no I/O.
NOOP_RULE = """
[[rule]]
name = "match"
on = ["config.create"]
when = ["event.state == 0"]
[[rule.actions]]
type = "noop"
"""


@dataclass
class Result:
    """One benchmark: its figures, the baseline, the ratio, the target and whether it is met."""

    name: str
    figures: dict[str, str]
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"## {self.name}", ""]
        out += [f"- {k}: {v}" for k, v in self.figures.items()]
        if self.ratio is not None:
            verdict = "reported" if self.met is None else "met" if self.met else "NOT met"
            out.append(f"- **ratio: {self.ratio:.3f}** (target {self.target}: {verdict})")
        out += [f"- {n}" for n in self.notes]
        return [*out, ""]


async def best_rate(run: Callable[[], Awaitable[int]], repeats: int = 3) -> float:
    """The best events/s of ``repeats`` runs of ``run`` (which returns how many events it did)."""
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        count = await run()
        best = max(best, count / (time.perf_counter() - started))
    return best


def machine() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    cpus = len(__import__("os").sched_getaffinity(0))
    return (
        f"{platform.node()} · {platform.machine()} · {cpus} cores · Python {platform.python_version()} · "
        f"commit {commit or '?'} · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def write_results(results: list[Result], path: Path = ROOT / "bench" / "RESULTS.md") -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Measured on {machine()}.",
        "",
        "Every figure is a ratio against a baseline measured in the same run (see bench/README.md).",
        "",
    ]
    for result in results:
        lines += result.lines()
    path.write_text("\n".join(lines))
