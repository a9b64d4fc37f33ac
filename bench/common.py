"""Benchmark plumbing: results as ratios against a baseline measured in the same run."""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import structlog

from reactor.app import Reactor
from reactor.delivery.state import MemoryStateStore, SQLiteStateStore, StateStore
from reactor.ops.audit import SQLiteAudit
from reactor.ops.logging import configure_logging, get_logger
from reactor.settings import Settings, load_settings
from reactor.sources.base import Source

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


#: What every benchmark measures unless it says otherwise: ``reactor run`` with the default
#: configuration (JSON log at INFO, metrics, audit on, SQLite state store and audit trail).
CONFIGURATION = (
    "as `reactor run` with the default configuration: JSON log at INFO (to a file), metrics, "
    "audit on (SQLite, beside the SQLite state store)"
)


class DeployedLog:
    """The daemon's logging as ``reactor run`` sets it up (JSON at INFO), into a real file, as an
    operator's log shipper would read it; ``lines`` counts what was written."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "reactor.log"
        self._stream: TextIO = self.path.open("a", encoding="utf-8")
        configure_logging("INFO", "json", stream=self._stream)

    def logger(self) -> structlog.typing.FilteringBoundLogger:
        return get_logger("reactor")

    def lines(self) -> int:
        self._stream.flush()
        with self.path.open("rb") as handle:
            return sum(1 for _ in handle)

    def close(self) -> None:
        self._stream.close()
        configure_logging("ERROR", "json")


def deployed_settings(directory: Path, **sections: Any) -> Settings:
    """The default settings (``reactor run`` with no config file but the bench's own sections);
    the SQLite state store and audit trail in ``directory``."""
    state = {"path": directory / "state.sqlite3", **sections.pop("state", {})}
    return load_settings(None, state=state, **sections)


def deployed_reactor(
    settings: Settings,
    source: Source,
    log: DeployedLog,
    *,
    observers: bool = True,
    memory_state: bool = False,
) -> Reactor:
    """``Reactor.build`` as ``reactor run`` does it: its own log, metrics and audit observers and
    sinks, and the configured SQLite state store and audit trail even for an in-memory source
    (which ``build`` would give memory ones). ``observers=False`` strips the log line, metrics
    and audit, ``memory_state=True`` keeps completed steps in memory: only for figures reported
    beside the deployed one, to explain it, never instead."""
    steps = settings.state
    state: StateStore = (
        MemoryStateStore()
        if memory_state
        else SQLiteStateStore(steps.path, steps.retention_s, None, steps.commit_interval_ms / 1000)
    )
    reactor = Reactor.build(settings, source, log.logger(), state=state)
    if observers and settings.ops.audit and settings.source == "memory":
        audit = SQLiteAudit(settings.state.path, settings.ops.audit_retention_s, settings.ops.audit_max_rows)
        reactor.audit = audit
        reactor.worker.settler._sinks = [audit.record]
    if not observers:
        reactor.worker.settler._observers = []
        reactor.worker.settler._sinks = []
        reactor.audit = None
    return reactor


@dataclass
class Result:
    """One benchmark: its figures, the baseline, the ratio, the target and whether it is met."""

    name: str
    figures: dict[str, str]
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    #: Why the benchmark failed (its own check did not hold): ``python -m bench`` exits non-zero.
    failed: str = ""

    def lines(self) -> list[str]:
        out = [f"## {self.name}", ""]
        if self.failed:
            out.append(f"- **FAILED: {self.failed}**")
        out += [f"- {k}: {v}" for k, v in self.figures.items()]
        if self.ratio is not None:
            verdict = "reported" if self.met is None else "met" if self.met else "NOT met"
            out.append(f"- **ratio: {self.ratio:.3f}** (target {self.target}: {verdict})")
        out += [f"- {n}" for n in self.notes]
        return [*out, ""]


async def rates(run: Callable[[], Awaitable[int]], repeats: int = 3) -> list[float]:
    """The events/s of each of ``repeats`` runs of ``run`` (which returns how many events it did)."""
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        count = await run()
        out.append(count / (time.perf_counter() - started))
    return out


async def best_rate(run: Callable[[], Awaitable[int]], repeats: int = 3) -> float:
    """The best events/s of ``repeats`` runs of ``run``."""
    return max(await rates(run, repeats))


def spread(values: list[float], unit: str = "events/s", digits: int = 0) -> str:
    """``min to max over n runs`` (the spread a figure was taken from)."""
    return f"{min(values):,.{digits}f} to {max(values):,.{digits}f} {unit} over {len(values)} runs"


def machine() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    cpus = len(__import__("os").sched_getaffinity(0))
    return (
        f"{platform.node()} · {platform.machine()} · {cpus} cores · Python {platform.python_version()} · "
        f"commit {commit or '?'} · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


FUZZ_SECTION = "## 7. Fuzz"


def write_results(results: list[Result], path: Path = ROOT / "bench" / "RESULTS.md") -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Measured on {machine()}.",
        "",
        f"The reactor runs {CONFIGURATION}, unless a figure says otherwise (figures without the "
        "observers are reported beside, to explain, never instead).",
        "",
        "Every figure is a ratio against a baseline measured in the same run (see bench/README.md). "
        "The machine's 2 cores are shared with other work (other engineers' test runs): absolute "
        "rates vary from run to run; the spread is the range over the repeats of each figure.",
        "",
        "Where a target is not met, README.md (Benchmarks) states the gap and the profile that explains it.",
        "",
    ]
    for result in results:
        lines += result.lines()
    kept = ""  # the fuzz writes its own section (python -m bench.fuzz): kept as it is
    if path.exists():
        _, marker, rest = path.read_text().partition(FUZZ_SECTION)
        kept = marker + rest if marker else ""
    path.write_text("\n".join(lines) + ("\n" + kept if kept else ""))
