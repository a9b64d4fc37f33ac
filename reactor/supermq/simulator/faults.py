"""Fault injection for the simulator: deterministic schedules first, a seeded error rate second."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field


@dataclass
class Planned:
    """A fault for the next ``count`` matching requests."""

    count: int
    status: int = 503
    retry_after_s: float | None = None
    hang_s: float = 0.0
    path_prefix: str = ""
    method: str = ""
    skip: int = 0


@dataclass
class Faults:
    """What goes wrong, and when. All of it can be changed while the simulator runs."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    seed: int = 1
    planned: list[Planned] = field(default_factory=list)
    down_until: float = 0.0
    down_path_prefix: str = ""
    _rng: random.Random = field(default_factory=lambda: random.Random(1), repr=False)  # noqa: S311 - fault dice

    def fail_next(
        self,
        count: int,
        status: int = 503,
        *,
        retry_after_s: float | None = None,
        path_prefix: str = "",
        method: str = "",
        skip: int = 0,
    ) -> None:
        """The next ``count`` requests (under ``path_prefix``, of ``method``, after letting ``skip``
        of them through) answer ``status`` (429 with Retry-After)."""
        self.planned.append(Planned(count, status, retry_after_s, 0.0, path_prefix, method.upper(), skip))

    def hang_next(self, count: int, seconds: float, *, path_prefix: str = "") -> None:
        """The next ``count`` requests get no answer for ``seconds`` (the client times out)."""
        self.planned.append(Planned(count, 0, None, seconds, path_prefix))

    def outage(self, seconds: float, *, path_prefix: str = "") -> None:
        """Answer 503 to everything (under ``path_prefix``) for ``seconds``."""
        self.down_until = time.monotonic() + seconds
        self.down_path_prefix = path_prefix

    def recover(self) -> None:
        self.down_until = 0.0
        self.planned.clear()
        self.error_rate = 0.0

    def reseed(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)  # noqa: S311 - fault dice, not secrets

    def take(self, path: str, method: str = "") -> Planned | None:
        """The fault for a request to ``path`` now, or None."""
        if self.down_until and time.monotonic() < self.down_until and path.startswith(self.down_path_prefix):
            return Planned(1, 503, 1.0)
        for plan in self.planned:
            if plan.count > 0 and path.startswith(plan.path_prefix) and plan.method in ("", method):
                if plan.skip:
                    plan.skip -= 1
                    return None
                plan.count -= 1
                if plan.count == 0:
                    self.planned.remove(plan)
                return plan
        if self.error_rate and self._rng.random() < self.error_rate:
            return Planned(1, self.error_status)
        return None
