"""CPU pinning for the onboarding benchmark (``bench/onboarding.py``, issue 17): the platform's
processes on one CPU, this process (the client side: the reactor or the bare script alike) on
the other, which models the reactor on a host of its own. Every thread is pinned
(``/proc/<pid>/task/*``: the Go runtime's threads, this process's executor threads); a thread
started later inherits its creator's CPU. Everything is put back afterwards: each thread that
was there to its own earlier set, one started meanwhile to its process's earlier set.
PostgreSQL is the machine's shared service and is left alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PLATFORM_CPU = 0
CLIENT_CPU = 1


def unavailable() -> str | None:
    """Why the pinned run cannot be had here (``None`` when it can)."""
    if not hasattr(os, "sched_setaffinity") or not Path("/proc/self/task").is_dir():
        return "no per-thread CPU affinity on this system (os.sched_setaffinity, /proc: Linux only)"
    cpus = os.sched_getaffinity(0)
    if not {PLATFORM_CPU, CLIENT_CPU} <= cpus:
        return f"this process may run on CPU(s) {sorted(cpus)} only: CPUs 0 and 1 are needed"
    return None


def threads(pid: int) -> list[int]:
    """The thread ids of ``pid`` (none when it is gone)."""
    with contextlib.suppress(OSError):
        return sorted(int(t.name) for t in Path(f"/proc/{pid}/task").iterdir() if t.name.isdigit())
    return []


@dataclass
class Pinning:
    """What was pinned where, and each thread's and process's set before."""

    saved: dict[int, set[int]] = field(default_factory=dict)
    processes: dict[int, set[int]] = field(default_factory=dict)
    pinned: dict[int, int] = field(default_factory=dict)  # CPU -> threads pinned to it

    def pin(self, pid: int, cpu: int) -> None:
        with contextlib.suppress(OSError):
            self.processes[pid] = os.sched_getaffinity(pid)
        for tid in threads(pid):
            with contextlib.suppress(OSError):  # a thread that has just ended
                self.saved.setdefault(tid, os.sched_getaffinity(tid))
                os.sched_setaffinity(tid, {cpu})
                self.pinned[cpu] = self.pinned.get(cpu, 0) + 1

    def restore(self) -> None:
        for pid, before in self.processes.items():
            for tid in threads(pid):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(tid, self.saved.get(tid, before))

    def on(self, pid: int, cpu: int) -> bool:
        """Whether every thread of ``pid`` may run on ``cpu`` alone (a check of the pinning)."""
        with contextlib.suppress(OSError):
            return all(os.sched_getaffinity(tid) == {cpu} for tid in threads(pid))
        return False


@contextlib.contextmanager
def pinned(platform: list[int]) -> Iterator[Pinning]:
    """``platform``'s processes on CPU 0, this process on CPU 1, restored on the way out."""
    pinning = Pinning()
    try:
        for pid in platform:
            pinning.pin(pid, PLATFORM_CPU)
        pinning.pin(os.getpid(), CLIENT_CPU)
        yield pinning
    finally:
        pinning.restore()
