"""HTTP actions: the reactor running one action per event against a fast loopback server (own
process), against a bare aiohttp client sending the same requests at the same concurrency.

Two actions: ``bootstrap.change_state`` (one PUT per event) and ``bootstrap.update_content``
(GET the config, PUT the merged content: two requests per event; the baseline sends both too).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp

from bench.common import ROOT, DeployedLog, Result, deployed_reactor, deployed_settings, spread
from reactor.sources.memory import MemorySource
from tests.servers import free_port

EVENTS = 4000
CONCURRENCY = 64
REPEATS = 5
DEVICES = 2000
RULES = {
    "change_state": """
[[rule]]
name = "activate"
on = ["config.create"]
[[rule.actions]]
type = "bootstrap.change_state"
config_id = "{{ event.thing_id }}"
state = 1
""",
    "update_content": """
[[rule]]
name = "push"
on = ["config.create"]
[[rule.actions]]
type = "bootstrap.update_content"
config_id = "{{ event.thing_id }}"
patch = { reactor = { seen = true } }
""",
}


@contextlib.asynccontextmanager
async def server() -> AsyncIterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.fastserver", str(port)], cwd=ROOT)  # noqa: ASYNC220
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as probe:
            for _ in range(100):
                try:
                    async with probe.put(f"{url}/things/state/x", data=b"{}"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(5)


async def _bare(url: str, kind: str) -> float:
    """Bare aiohttp: the same requests, the same concurrency, nothing else."""
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            async with slots:
                thing = f"t{i % DEVICES}"
                if kind == "change_state":
                    async with session.put(
                        f"{url}/things/state/{thing}", data=b'{"state": 1}', headers=headers
                    ) as r:
                        await r.read()
                    return
                async with session.get(f"{url}/things/configs/{thing}", headers=headers) as r:
                    await r.read()
                async with session.put(
                    f"{url}/things/configs/{thing}",
                    headers=headers,
                    data=b'{"name":"n","content":"{\\"reactor\\":{\\"seen\\":true}}"}',
                ) as r:
                    await r.read()

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(EVENTS)))
        return EVENTS / (time.perf_counter() - started)


async def _reactor(
    url: str,
    kind: str,
    rules_dir: Path,
    log: DeployedLog,
    observers: bool = True,
    memory_state: bool = False,
    per_step: bool = False,
) -> float:
    """The daemon's loop over the events; ``per_step``: each completed step committed as it
    completes (``state.commit_interval_ms = 0``), not with its batch."""
    supermq = {f"{s}_url": url for s in ("users", "things", "bootstrap", "certs", "http")}
    _RUNS[0] += 1
    settings = deployed_settings(
        rules_dir / f"run{_RUNS[0]}",
        source="memory",
        rules={"dir": rules_dir, "reload_interval_s": 0},
        supermq=supermq
        | {"identity": "bench", "secret": "bench", "max_connections": CONCURRENCY, "profile": "things"},
        worker={"concurrency": CONCURRENCY},
        state={"commit_interval_ms": 0} if per_step else {},
    )
    events = [
        ("supermq.bootstrap", {"operation": "config.create", "thing_id": f"t{i % DEVICES}"})
        for i in range(EVENTS)
    ]
    source = MemorySource(events)
    reactor = deployed_reactor(settings, source, log, observers=observers, memory_state=memory_state)
    started = time.perf_counter()
    await reactor.worker.run(asyncio.Event())  # the daemon's loop; returns when the list is done
    rate = EVENTS / (time.perf_counter() - started)
    assert reactor.worker.counters.actions_ok == EVENTS, vars(reactor.worker.counters)
    await reactor.client.aclose()
    await reactor.state.close()
    if reactor.audit is not None:
        await reactor.audit.close()
    return rate


_RUNS = [0]


async def _interleaved(*sides: Callable[[], Awaitable[float]], repeats: int = REPEATS) -> list[list[float]]:
    """``repeats`` runs of each side, taken in turns so that a slow spell of the machine (the
    server shares the two cores) falls on every side rather than on one."""
    out: list[list[float]] = [[] for _ in sides]
    for _ in range(repeats):
        for rates, side in zip(out, sides, strict=True):
            rates.append(await side())
    return out


def _paired(ours: list[float], bare: list[float]) -> str:
    """The ratio of each round's two runs: on a machine whose speed drifts, the best of each side
    may come from different rounds."""
    ratios = sorted(o / b for o, b in zip(ours, bare, strict=True))
    return f"median {statistics.median(ratios):.3f}, {ratios[0]:.3f} to {ratios[-1]:.3f}"


def _per_step(per_steps: list[float], ourss: list[float], bare: float) -> str:
    """The figure with ``state.commit_interval_ms = 0``: what the commits in groups save."""
    best = max(per_steps)
    return (
        f"{best:,.0f} events/s ({spread(per_steps)}), {best / bare:.3f} of bare; against as "
        f"deployed, per round: {_paired(per_steps, ourss)}"
    )


async def run() -> list[Result]:
    results = []
    async with server() as url:
        with tempfile.TemporaryDirectory() as tmp:
            log = DeployedLog(Path(tmp))
            for kind, text in RULES.items():
                rules_dir = Path(tmp) / kind
                rules_dir.mkdir()
                (rules_dir / "r.toml").write_text(text)
                await _bare(url, kind)  # warm-up
                bares, ourss, strippeds, in_memory, per_steps = await _interleaved(
                    lambda k=kind: _bare(url, k),  # type: ignore[misc]
                    lambda k=kind, d=rules_dir: _reactor(url, k, d, log),  # type: ignore[misc]
                    lambda k=kind, d=rules_dir: _reactor(url, k, d, log, observers=False),  # type: ignore[misc]
                    lambda k=kind, d=rules_dir: _reactor(url, k, d, log, memory_state=True),  # type: ignore[misc]
                    lambda k=kind, d=rules_dir: _reactor(url, k, d, log, per_step=True),  # type: ignore[misc]
                )
                bare, ours, stripped, memory = max(bares), max(ourss), max(strippeds), max(in_memory)
                ratio = ours / bare
                requests = 1 if kind == "change_state" else 2
                results.append(
                    Result(
                        f"2. HTTP actions: bootstrap.{kind} ({requests} request(s) per event)",
                        {
                            "bare aiohttp": f"{bare:,.0f} events/s ({spread(bares)})",
                            "reactor as deployed (log line, metrics, audit, SQLite state store)": (
                                f"{ours:,.0f} events/s ({spread(ourss)})"
                            ),
                            "beside, to explain: the reactor without its observers": (
                                f"{stripped:,.0f} events/s ({spread(strippeds)}), "
                                f"{stripped / bare:.3f} of bare"
                            ),
                            "ratio per round (the runs taken in turns)": _paired(ourss, bares),
                            "beside, to explain: observers on, completed steps kept in memory": (
                                f"{memory:,.0f} events/s ({spread(in_memory)}), {memory / bare:.3f} of bare"
                            ),
                            "beside, to explain: each step committed as it completes": _per_step(
                                per_steps, ourss, bare
                            ),
                            "setup": f"{EVENTS:,} events, {CONCURRENCY} in flight, loopback aiohttp server "
                            f"in its own process, best of {REPEATS} taken in turns",
                        },
                        ratio=ratio,
                        target=">= 0.85",
                        met=ratio >= 0.85,
                    )
                )
            log.close()
    return results


if __name__ == "__main__":
    for result in asyncio.run(run()):
        print("\n".join(result.lines()))
