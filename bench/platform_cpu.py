"""CPU time over a window of a benchmark: this process's, and a real deployment's (its services,
its private Redis, the PostgreSQL backends serving its databases), read from /proc."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from tests.conformance.deployment import Deployment

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (0 when it is gone)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    return 0.0


class PlatformCpu:
    """The deployment's processes: what it started, and the PostgreSQL backends whose process
    title names one of its databases (they come and go with its connection pools: a backend that
    ends inside a window is missed, one that starts inside is counted whole)."""

    def __init__(self, deployment: Deployment) -> None:
        self.d = deployment

    def _pids(self) -> list[int]:
        pids = [p.pid for p in self.d.procs.values()]
        prefix = self.d.db_prefix.encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if prefix in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
        return pids

    def sample(self) -> dict[int, float]:
        return {pid: _cpu_s(pid) for pid in self._pids()}

    def window(self) -> Window:
        return Window(self)


class Window:
    """Opened at a run's start; ``close`` gives (this process's, the platform's) CPU seconds."""

    def __init__(self, cpu: PlatformCpu) -> None:
        self._cpu = cpu
        self._own = time.process_time()
        self._before = cpu.sample()

    def close(self) -> tuple[float, float]:
        own = time.process_time() - self._own
        after = self._cpu.sample()
        return own, sum(max(0.0, v - self._before.get(pid, 0.0)) for pid, v in after.items())
