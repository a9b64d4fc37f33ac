"""The onboarding benchmark's figures (``bench/onboarding.py``): one configuration's rounds (the
best of each side, the ratio per round, where the time goes), named with a prefix so that the
shared-cores and the pinned configurations stand side by side in one section."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from bench.common import spread
from bench.mainflux_fleet import ACTIVATE, LOGIN

if TYPE_CHECKING:
    from bench.onboarding import Rounds


def _q(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def _walls(runs: list[dict[str, Any]]) -> str:
    return spread([r["wall"] for r in runs], "s", 2)


def ratio(rounds: Rounds) -> float:
    """The best bare run's wall time over the reactor's best."""
    return float(min(r["wall"] for r in rounds.bare) / min(r["wall"] for r in rounds.ours))


def configuration(rounds: Rounds, devices: int, prefix: str = "") -> dict[str, str]:
    """One configuration's figures, each key starting with ``prefix``."""
    bare = min(r["wall"] for r in rounds.bare)
    ours = min(r["wall"] for r in rounds.ours)
    per_round = sorted(b["wall"] / o["wall"] for b, o in zip(rounds.bare, rounds.ours, strict=True))
    figures = {
        "bare aiohttp (the rule's calls)": (
            f"{bare:.2f} s, {devices / bare:,.0f} devices/s ({_walls(rounds.bare)})"
        ),
        "reactor as deployed": (f"{ours:.2f} s, {devices / ours:,.0f} devices/s ({_walls(rounds.ours)})"),
        "ratio, best bare over best reactor": f"{bare / ours:.3f}",
        "ratio per round (the runs taken in turns)": (
            f"median {statistics.median(per_round):.3f}, {per_round[0]:.3f} to {per_round[-1]:.3f}"
        ),
        **_platform_figures(rounds, devices),
        **_reactor_figures(rounds, devices),
    }
    return {f"{prefix}{k}": v for k, v in figures.items()}


def _platform_figures(rounds: Rounds, devices: int) -> dict[str, str]:
    """Where the platform's time goes: each call's latency, its CPU per device."""
    calls = rounds.timings.by_call[ACTIVATE]
    ms = 1000 / devices
    return {
        f"platform latency, {ACTIVATE} as the bare script saw it": (
            f"p50 {_q(calls, 0.5) * 1000:.1f} ms, p99 {_q(calls, 0.99) * 1000:.1f} ms ({len(calls):,} calls)"
        ),
        f"platform latency, {LOGIN}": f"p50 {_q(rounds.timings.by_call[LOGIN], 0.5) * 1000:.1f} ms",
        "CPU per device in the platform (Go services, their Redis, their PostgreSQL backends)": (
            f"{_median(rounds.ours, 'platform') * ms:.2f} ms in the reactor's runs / "
            f"{_median(rounds.bare, 'platform') * ms:.2f} ms in the bare script's"
        ),
    }


def _reactor_figures(rounds: Rounds, devices: int) -> dict[str, str]:
    """Where the reactor's time goes: the calls as its steps saw them, how full it kept the
    pipe, its CPU beyond the bare script's (medians over the runs)."""
    steps = [s for r in rounds.ours for s in r["step_s"]]
    ms = 1000 / devices
    ours_cpu, bare_cpu = _median(rounds.ours, "cpu"), _median(rounds.bare, "cpu")
    events = _median(rounds.ours, "events")
    return {
        "the same call as the reactor's action step (its client, retries included)": (
            f"p50 {_q(steps, 0.5) * 1000:.1f} ms, p99 {_q(steps, 0.99) * 1000:.1f} ms"
        ),
        "calls in flight on average (their time summed over the wall time): reactor / bare": (
            f"{_median(rounds.ours, 'in_flight'):.1f} / {_median(rounds.bare, 'in_flight'):.1f} "
            f"of {rounds.concurrency}"
        ),
        "CPU per device in this process: reactor / bare script": (
            f"{ours_cpu * ms:.2f} ms / {bare_cpu * ms:.2f} ms"
        ),
        "the reactor's own CPU beyond the calls (reactor minus bare), per device / per event settled": (
            f"{(ours_cpu - bare_cpu) * ms:.2f} ms / {(ours_cpu - bare_cpu) / max(1.0, events) * 1e6:.0f} µs"
        ),
        "events the reactor settled per device (config.create, its own thing.change_state, things' events)": (
            f"{events / devices:.2f}"
        ),
        "reactor: start to first device settled": f"{_median(rounds.ours, 'first_s') * 1000:.0f} ms",
        "calls sent again after a 5xx: reactor / bare": (
            f"{sum(r['retried'] for r in rounds.ours)} / {sum(r['retried'] for r in rounds.bare)}"
        ),
    }
