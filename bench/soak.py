"""Soak: several reactor processes in one consumer group, SIGKILLed at random, Redis restarted once.

The harness the fault test runs small and ``make bench`` runs large. It starts a private
redis-server (append-only, fsync always) and the SuperMQ simulator in this process, XADDs
``events`` ``config.update`` events for ``devices`` devices (each carrying its per-device sequence
number), starts ``processes`` ``reactor run`` processes, kills one at random ``kills`` times
(starting a new one each time), restarts Redis once halfway, and waits until every event is acted
on or dead-lettered. The rule pushes ``{"seq": n}`` into the device's bootstrap content, so the
simulator's effects show, per device, every sequence number applied: the report counts lost,
duplicated and out-of-order ones (all must be 0).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.common import ROOT
from reactor.supermq.simulator import Simulator
from tests.servers import PrivateRedis

RULE = """
[[rule]]
name = "push-seq"
on = ["config.update"]
[[rule.actions]]
type = "bootstrap.update_content"
config_id = "{{ event.thing_id }}"
patch = { seq = "{{ event.seq | int }}" }
"""
STREAM = "soak.bootstrap"


@dataclass
class SoakReport:
    events: int
    processes: int
    kills: int
    seconds: float = 0.0
    applied: int = 0
    dead_lettered: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    exit_codes: list[int] = field(default_factory=list)
    dead_reasons: list[str] = field(default_factory=list)
    anomalies: dict[str, list[int]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _config(path: Path, redis_url: str, sim: Simulator, rules: Path) -> Path:
    urls = "\n".join(f'{s}_url = "{sim.url(s)}"' for s in ("users", "things", "bootstrap", "certs", "http"))
    path.write_text(f"""
[redis]
url = "{redis_url}"
streams = ["{STREAM}"]
group = "soak"
start_id = "0"
batch_size = 100
block_ms = 100
reclaim_idle_ms = 3000
reclaim_interval_s = 0.3

[events]
families = ["soak"]

[rules]
dir = "{rules}"
reload_interval_s = 0

[worker]
concurrency = 32
grace_s = 5.0

[state]
backend = "redis"

[supermq]
{urls}
identity = "{sim.state.identity}"
secret = "{sim.state.secret}"

[ops]
listen = ""

[log]
level = "WARNING"
""")
    return path


async def _spawn(config: Path, logs: Path, n: int) -> asyncio.subprocess.Process:
    with (logs / f"reactor-{n}.log").open("wb") as out:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reactor",
            "--config",
            str(config),
            "run",
            cwd=ROOT,
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _applied(sim: Simulator) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for effect in sim.state.effects:
        if effect.kind == "config.update":
            out.setdefault(effect.device, []).append(int(json.loads(effect.detail["content"])["seq"]))
    return out


async def _publish(client: aioredis.Redis, sim: Simulator, events: int, devices: int) -> dict[str, list[int]]:
    things = [sim.state.add_thing(f"d{i}") for i in range(devices)]
    for thing in things:
        sim.state.add_config(thing, f"ext-{thing.id}", "key", [], "{}")
    expected: dict[str, list[int]] = {t.id: [] for t in things}
    async with client.pipeline(transaction=False) as pipe:
        for i in range(events):
            thing = things[i % devices]
            seq = len(expected[thing.id]) + 1
            expected[thing.id].append(seq)
            pipe.xadd(
                STREAM,
                {
                    "operation": "config.update",
                    "thing_id": thing.id,
                    "seq": str(seq),
                    "occurred_at": str(time.time_ns()),
                },
            )
        await pipe.execute()
    return expected


async def _done(client: aioredis.Redis, sim: Simulator, events: int) -> bool:
    try:
        dead = int(await client.xlen("reactor.dlq"))
        pending = (await client.xpending(STREAM, "soak"))["pending"]
    except Exception:  # Redis may be restarting: not done yet
        return False
    applied = sum(len(set(v)) for v in _applied(sim).values())
    return applied + dead >= events and pending == 0


async def run_soak(
    events: int,
    devices: int,
    processes: int,
    kills: int,
    *,
    timeout_s: float = 300,
    workdir: Path | None = None,
    seed: int = 7,
    restart_redis: bool = True,
    kill_gap_s: tuple[float, float] = (0.2, 0.8),
) -> SoakReport:
    """Run the soak; the report says what was lost, duplicated or out of order."""
    rng = random.Random(seed)  # kill timing, not secrets
    base = workdir or Path(tempfile.mkdtemp(prefix="reactor-soak-"))
    rules = base / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    (rules / "soak.toml").write_text(RULE)
    redis_server = PrivateRedis(base / "redis")
    redis_server.start()
    report = SoakReport(events, processes, kills)
    async with Simulator(validate=False) as sim:
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        expected = await _publish(client, sim, events, devices)
        config = _config(base / "reactor.toml", redis_server.url, sim, rules)
        procs = [await _spawn(config, base, n) for n in range(processes)]
        started = time.monotonic()
        try:
            await _chaos(
                procs,
                config,
                base,
                redis_server if restart_redis else None,
                kills,
                rng,
                lambda: _done(client, sim, events),
                kill_gap_s,
            )
            async with asyncio.timeout(timeout_s):
                while not await _done(client, sim, events):
                    await asyncio.sleep(0.1)
            report.seconds = time.monotonic() - started
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
            report.exit_codes = [await proc.wait() for proc in procs]
        dead: Any = await client.xrange("reactor.dlq")
        report.dead_reasons = [f"{f['reason']}: {f['error']}" for _, f in dead]
        await client.aclose()
        _score(
            report,
            expected,
            _applied(sim),
            {json.loads(f["event"])["thing_id"] + "/" + json.loads(f["event"])["seq"] for _, f in dead},
        )
    redis_server.stop()
    return report


async def _chaos(
    procs: list[asyncio.subprocess.Process],
    config: Path,
    logs: Path,
    redis_server: PrivateRedis | None,
    kills: int,
    rng: random.Random,
    done: Any,
    gap_s: tuple[float, float],
) -> None:
    """Kill a process at random ``kills`` times (a new one takes its place); restart Redis halfway."""
    spawned = len(procs)
    for n in range(kills):
        await asyncio.sleep(rng.uniform(*gap_s))
        if await done():
            return
        victim = rng.randrange(len(procs))
        procs[victim].kill()
        await procs[victim].wait()
        procs[victim] = await _spawn(config, logs, spawned)
        spawned += 1
        if redis_server is not None and n == kills // 2:
            await asyncio.to_thread(redis_server.restart, 0.5)


def _score(
    report: SoakReport, expected: dict[str, list[int]], applied: dict[str, list[int]], dead: set[str]
) -> None:
    report.dead_lettered = len(dead)
    for device, seqs in expected.items():
        got = applied.get(device, [])
        report.applied += len(got)
        report.duplicated += len(got) - len(set(got))
        report.out_of_order += sum(1 for a, b in itertools.pairwise(got) if b <= a)
        if got != sorted(set(got)):
            report.anomalies[device] = got
        report.lost += sum(1 for s in seqs if s not in set(got) and f"{device}/{s}" not in dead)


def main() -> None:
    """``python -m bench.soak [EVENTS]``: 3 processes, 10 kills spread over the run, one Redis restart."""
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    report = asyncio.run(
        run_soak(size, devices=500, processes=3, kills=10, timeout_s=3600, kill_gap_s=(3.0, 12.0))
    )
    print(
        f"soak: {report.events:,} events, {report.processes} processes, {report.kills} kills, "
        f"1 Redis restart: {report.rate:,.0f} events/s; lost {report.lost}, duplicated {report.duplicated}, "
        f"out of order {report.out_of_order}, dead-lettered {report.dead_lettered}"
    )


if __name__ == "__main__":
    main()
