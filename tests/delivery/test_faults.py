"""Fault tests: reactor processes SIGKILLed at random mid-burst and the broker SIGKILLed and started
again once lose nothing, counted on the SuperMQ simulator, on a private server of each event
store (tests/servers.py), never the machine's own.

- Redis Streams: 3 processes; nothing applied twice, per-device order kept.
- RabbitMQ: one process at a time (killed 6 times, a new one started each time), the deployment
  README's "Delivery contract" asks for where per-device order matters; nothing applied twice.
- NATS JetStream: the same; nothing applied twice and per-device order kept too: a device's later
  messages wait while an earlier one above the consumer's ack floor is held elsewhere (JetStream
  hands the new process newer messages until the killed one's ``ack_wait`` is over; before that
  wait, 0-39 of 1,500 were applied twice, an earlier one applied and not recorded coming back
  after a later one). Seeds 1, 2, 3, 4 and 7 of ``bench.soak``'s chaos: 0 and 0.
"""

from __future__ import annotations

from pathlib import Path

from bench.soak import SoakReport, run_soak

# The harness's own timeouts end before pytest's (120 s): its clean-up stops the private servers
# (a timed-out pytest exits at once and leaves them running, a RabbitMQ node among them).


def _assert_nothing_lost_or_repeated(report: SoakReport) -> None:
    assert report.lost == 0, report
    assert report.duplicated == 0, report
    assert report.applied - report.duplicated + report.dead_lettered == report.events, report  # each once
    assert report.dead_lettered == 0, report.dead_reasons
    assert report.unsettled_at_end == 0, report
    assert all(code == 0 for code in report.exit_codes), report.exit_codes  # SIGTERM at the end: clean exits


async def test_kills_and_a_redis_restart_lose_nothing(tmp_path: Path) -> None:
    report = await run_soak(events=1500, devices=60, processes=3, kills=6, timeout_s=90, workdir=tmp_path)
    _assert_nothing_lost_or_repeated(report)
    assert report.out_of_order == 0, report


async def test_kills_and_a_rabbitmq_restart_lose_nothing(tmp_path: Path) -> None:
    report = await run_soak(
        events=1500, devices=60, processes=1, kills=6, backend="rabbitmq", timeout_s=75, workdir=tmp_path
    )
    _assert_nothing_lost_or_repeated(report)


async def test_kills_and_a_nats_restart_lose_nothing(tmp_path: Path) -> None:
    report = await run_soak(
        events=1500, devices=60, processes=1, kills=6, backend="nats", timeout_s=75, workdir=tmp_path
    )
    _assert_nothing_lost_or_repeated(report)
    assert report.out_of_order == 0, report
