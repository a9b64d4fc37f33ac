"""Operating it: /metrics after a run with known outcomes, /readyz across a Redis outage,
``reactor history`` and ``reactor status`` on a known run."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from reactor.app import Reactor
from reactor.delivery.outcome import Outcome
from reactor.ops.audit import AuditRow, MemoryAudit, print_history
from reactor.ops.logging import get_logger
from reactor.ops.server import OpsServer
from reactor.ops.status import gather, print_status
from reactor.settings import Settings, load_settings
from reactor.sources.redis_streams import RedisStreamsSource
from reactor.supermq.simulator import Simulator
from tests.conftest import REDIS_URL
from tests.rules.helpers import registry
from tests.servers import PrivateRedis

RULES = """
[[rule]]
name = "activate"
on = ["config.create"]
retry = { attempts = 3, initial_s = 0.01, max_wait_s = 0.02, jitter_s = 0 }
[[rule.actions]]
id = "state"
type = "bootstrap.change_state"
config_id = "{{ event.thing_id }}"
state = 1

[[rule]]
name = "note"
on = ["config.create", "thing.bootstrap"]
[[rule.actions]]
type = "log"
message = "seen {{ event.operation }}"
"""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(validate=False) as simulator:
        yield simulator


def _settings(tmp_path: Path, sim: Simulator, unique: str, url: str = REDIS_URL) -> Settings:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "r.toml").write_text(RULES)
    settings = load_settings(
        None,
        redis={
            "url": url,
            "streams": [f"o{unique}.bootstrap"],
            "group": "g",
            "consumer": "c1",
            "start_id": "0",
            "block_ms": 50,
            "dlq_stream": f"o{unique}.dlq",
        },
        events={"families": [f"o{unique}"]},
        rules={"dir": rules, "reload_interval_s": 0},
        state={"backend": "sqlite", "path": tmp_path / "state.sqlite3"},
        ops={"listen": "127.0.0.1:0", "backlog_interval_s": 0.05},
    )
    return settings.model_copy(update={"supermq": sim.settings()})


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _run_known(redis_client: aioredis.Redis, settings: Settings, sim: Simulator) -> tuple[Reactor, Any]:
    ok, flaky, broken = (sim.state.add_thing(n) for n in ("ok", "flaky", "broken"))
    for thing in (ok, flaky, broken):
        sim.state.add_config(thing, f"e-{thing.name}", "k", [], "{}")
    sim.faults.fail_next(1, 503, path_prefix=f"/things/state/{flaky.id}")  # retried once, then fine
    sim.faults.fail_next(
        10, 500, path_prefix=f"/things/state/{broken.id}"
    )  # fails for good: 500 is a failure
    stream = settings.redis.streams[0]
    for thing in (ok, flaky, broken):
        await redis_client.xadd(stream, {"operation": "config.create", "thing_id": thing.id})
    await redis_client.xadd(stream, {"operation": "thing.bootstrap", "external_id": "x", "success": "1"})
    await redis_client.xadd(stream, {"data": "{broken"})
    outcomes: list[Outcome] = []
    reactor = Reactor.build(
        settings, RedisStreamsSource(settings.redis), get_logger("test"), observers=[outcomes.append]
    )
    server = OpsServer(reactor.metrics, reactor.ready, "127.0.0.1", 0)
    await server.start()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(reactor.run(stop)), asyncio.create_task(reactor.watch_backlog(stop))]
    async with asyncio.timeout(15):
        while len(outcomes) < 5:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # let the gauges catch up
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{server.port}/metrics")).text
        health = await http.get(f"http://127.0.0.1:{server.port}/healthz")
        ready = await http.get(f"http://127.0.0.1:{server.port}/readyz")
    stop.set()
    await asyncio.gather(*tasks)
    await server.stop()
    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"source": True, "rules": True, "settling": True}}
    return reactor, text


async def test_metrics_after_a_known_run(
    redis_client: aioredis.Redis, tmp_path: Path, sim: Simulator, unique: str
) -> None:
    settings = _settings(tmp_path, sim, unique)
    _, text = await _run_known(redis_client, settings, sim)
    stream = settings.redis.streams[0]
    assert _metric(text, "reactor_events_total", stream=stream, operation="config.create") == 3
    assert _metric(text, "reactor_events_total", stream=stream, operation="thing.bootstrap") == 1
    assert _metric(text, "reactor_events_malformed_total", stream=stream) == 1
    assert _metric(text, "reactor_rule_matched_total", rule="activate") == 3
    assert _metric(text, "reactor_rule_matched_total", rule="note") == 4
    assert _metric(text, "reactor_rule_failed_total", rule="activate") == 1
    labels = {"rule": "activate", "action": "state", "type": "bootstrap.change_state"}
    assert _metric(text, "reactor_actions_total", **labels, outcome="success") == 2
    assert _metric(text, "reactor_actions_total", **labels, outcome="failed") == 1  # the HTTP 500 one
    assert _metric(text, "reactor_action_retries_total", **labels) == 1 + 2  # flaky: 1 retry; broken: 2
    assert _metric(text, "reactor_dead_letters_total", reason="action_failed") == 1
    assert _metric(text, "reactor_dead_letters_total", reason="malformed") == 1
    assert _metric(text, "reactor_action_duration_seconds_count", type="bootstrap.change_state") == 3
    assert _metric(text, "reactor_event_latency_seconds_count") == 4
    assert _metric(text, "reactor_consumer_pending", stream=stream, group="g") == 0
    assert _metric(text, "reactor_consumer_lag", stream=stream, group="g") == 0
    assert _metric(text, "reactor_dead_letter_stream_length") == 2
    assert _metric(text, "reactor_rules_loaded") == 2
    assert _metric(text, "reactor_rules_last_reload_success") == 1


async def test_readyz_follows_redis(tmp_path: Path, sim: Simulator, unique: str) -> None:
    server_dir = tmp_path / "redis"
    private = PrivateRedis(server_dir)
    private.start()
    try:
        settings = _settings(tmp_path, sim, unique, url=private.url)
        reactor = Reactor.build(settings, RedisStreamsSource(settings.redis), get_logger("test"))
        ops = OpsServer(reactor.metrics, reactor.ready, "127.0.0.1", 0)
        await ops.start()
        stop = asyncio.Event()
        task = asyncio.create_task(reactor.run(stop))
        url = f"http://127.0.0.1:{ops.port}/readyz"
        async with httpx.AsyncClient() as http:
            assert (await http.get(url)).status_code == 200
            private.kill()
            down = await http.get(url)
            assert down.status_code == 503
            assert down.json()["checks"] == {"source": False, "rules": True, "settling": True}
            assert (await http.get(f"http://127.0.0.1:{ops.port}/healthz")).status_code == 200  # still alive
            await asyncio.to_thread(private.start)
            async with asyncio.timeout(10):
                while (await http.get(url)).status_code != 200:
                    await asyncio.sleep(0.05)
        stop.set()
        await task
        await ops.stop()
    finally:
        private.stop()


async def test_history_and_status_of_a_known_run(
    redis_client: aioredis.Redis, tmp_path: Path, sim: Simulator, unique: str
) -> None:
    settings = _settings(tmp_path, sim, unique)
    await _run_known(redis_client, settings, sim)
    broken = next(t for t in sim.state.things.values() if t.name == "broken")
    from reactor.app import build_audit

    audit = build_audit(settings)
    rows = await audit.query(device=broken.id)
    out = io.StringIO()
    print_history(rows, out)
    text = out.getvalue()
    assert f"config.create  device={broken.id}" in text
    assert "activate / state (bootstrap.change_state): failed, 3 attempts" in text
    assert f'{{"config_id": "{broken.id}", "state": 1}}' in text
    assert "error: change state of config" in text
    assert "HTTP 500" in text
    assert "note / actions[0] (log): success, 1 attempt" in text
    by_rule = await audit.query(rule="note")
    assert len(by_rule) == 4

    status = await gather(settings, redis_client, registry(), audit)
    await audit.close()
    (stream,) = status.streams
    assert (stream.exists, stream.lag, stream.pending, stream.oldest_pending_s) == (True, 0, 0, None)
    assert status.dead_letters == 2
    assert status.rules_loaded == 2
    wheres = [e["where"] for e in status.last_errors]
    assert wheres.count("dead-letter") == 2
    assert wheres.count("action") == 1
    out = io.StringIO()
    print_status(status, out)
    assert f"{settings.redis.streams[0]}" in out.getvalue()
    assert "dead-letter records: 2" in out.getvalue()
    assert "rules loaded: 2" in out.getvalue()
    json_out = io.StringIO()
    print_status(status, json_out, as_json=True)
    assert '"dead_letters": 2' in json_out.getvalue()


async def test_the_in_memory_audit_keeps_the_newest_rows_only() -> None:
    audit = MemoryAudit(keep=3)
    rows = [
        AuditRow(n, "s", f"{n}-0", "dev", "config.create", "r", "a", "noop", "{}", "success", 1, 0.1, "")
        for n in range(5)
    ]
    await audit.write(rows[:2])
    await audit.write(rows[2:])
    assert [r.entry_id for r in await audit.query(device="dev")] == ["2-0", "3-0", "4-0"]
    assert [r.entry_id for r in await audit.query(device="dev", limit=1)] == ["4-0"]
