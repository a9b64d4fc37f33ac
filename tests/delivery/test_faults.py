"""Fault test: reactor processes SIGKILLed at random and Redis restarted once lose nothing, apply
nothing twice, and keep per-device order (private redis-server, SuperMQ simulator)."""

from __future__ import annotations

from pathlib import Path

from bench.soak import run_soak


async def test_kills_and_a_redis_restart_lose_nothing(tmp_path: Path) -> None:
    report = await run_soak(events=1500, devices=60, processes=3, kills=6, timeout_s=150, workdir=tmp_path)
    assert report.lost == 0, report
    assert report.duplicated == 0, report
    assert report.out_of_order == 0, report
    assert report.applied + report.dead_lettered == report.events, report
    assert report.dead_lettered == 0, report.dead_reasons
    assert all(code == 0 for code in report.exit_codes), report.exit_codes  # SIGTERM at the end: clean exits
