"""The shipped Grafana dashboard and Prometheus alerts: every metric they use exists in /metrics
of a running reactor, the alerting rules pass ``promtool check rules`` and their unit tests
(``promtool test rules``), and every panel's query is valid PromQL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import yaml

from reactor.app import Reactor
from reactor.ops.logging import get_logger
from reactor.ops.server import OpsServer
from reactor.settings import load_settings
from reactor.sources.redis_streams import RedisStreamsSource
from reactor.supermq.simulator import Simulator
from tests.conftest import REDIS_URL, REPO
from tests.servers import PrivateRedis

DASHBOARD = REPO / "deploy" / "grafana" / "reactor-dashboard.json"
ALERTS = REPO / "deploy" / "prometheus" / "reactor-alerts.yml"
ALERT_TESTS = REPO / "deploy" / "prometheus" / "reactor-alerts.test.yml"
_METRIC = re.compile(r"\breactor_[a-z_]+\b")
#: What the dashboard must show (issue #20): events, rule matches, actions by outcome, retries,
#: dead letters, lag and pending, latency, certificate expiry.
MUST_SHOW = {
    "reactor_events_total",
    "reactor_rule_matched_total",
    "reactor_actions_total",
    "reactor_action_retries_total",
    "reactor_dead_letters_total",
    "reactor_consumer_lag",
    "reactor_consumer_pending",
    "reactor_event_latency_seconds_bucket",
    "reactor_cert_days_to_expiry_bucket",
}
RULES = """
[[rule]]
name = "note"
on = ["config.create"]
[[rule.actions]]
type = "log"
message = "seen {{ event.operation }}"
"""


def _panel_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _alert_queries() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for g in groups for rule in g["rules"]]


def _used(queries: list[str]) -> set[str]:
    return {m for q in queries for m in _METRIC.findall(q)}


def exposed(text: str) -> set[str]:
    """Every series name a query can use, from the ``# TYPE`` lines of an exposition (a
    labelled family with no sample yet still counts: it exists)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            suffixes = {
                "counter": ("", "_total", "_created"),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("", "_count", "_sum", "_created"),
            }.get(kind, ("",))
            names |= {name + s for s in suffixes}
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


@pytest.fixture
async def metrics_text(tmp_path: Path, unique: str, redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """/metrics of a reactor running on real Redis and the simulator, after one event."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.toml").write_text(RULES)
    async with Simulator(validate=False) as sim:
        settings = load_settings(
            None,
            redis={
                "url": REDIS_URL,
                "streams": [f"m{unique}.bootstrap"],
                "group": "g",
                "start_id": "0",
                "block_ms": 50,
            },
            events={"families": [f"m{unique}"]},
            rules={"dir": tmp_path / "rules", "reload_interval_s": 0},
            state={"backend": "sqlite", "path": tmp_path / "state.sqlite3"},
            ops={"listen": "127.0.0.1:0", "backlog_interval_s": 0.05},
        ).model_copy(update={"supermq": sim.settings()})
        await redis_client.xadd(settings.redis.streams[0], {"operation": "config.create", "thing_id": "t"})
        reactor = Reactor.build(settings, RedisStreamsSource(settings.redis), get_logger("test"))
        server = OpsServer(reactor.metrics, reactor.ready, "127.0.0.1", 0)
        await server.start()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(reactor.run(stop)), asyncio.create_task(reactor.watch_backlog(stop))]
        try:
            async with httpx.AsyncClient() as http:
                url = f"http://127.0.0.1:{server.port}/metrics"
                async with asyncio.timeout(15):
                    while "reactor_events_total{" not in (text := (await http.get(url)).text):
                        await asyncio.sleep(0.05)
                    while "reactor_rules_loaded 1.0" not in (text := (await http.get(url)).text):
                        await asyncio.sleep(0.05)
            yield text
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await server.stop()


def test_dashboard_shows_what_an_operator_watches() -> None:
    used = _used(_panel_queries())
    assert used >= MUST_SHOW, MUST_SHOW - used
    assert all(_METRIC.search(q) for q in _panel_queries())  # no panel without a reactor metric


async def test_every_metric_the_dashboard_and_alerts_use_is_exposed(metrics_text: str) -> None:
    names = exposed(metrics_text)
    used = _used(_panel_queries()) | _used(_alert_queries())
    assert used - names == set()
    assert len(used) >= 15


def test_exposed_reads_families_without_samples() -> None:
    text = (
        "# HELP reactor_x_total x\n# TYPE reactor_x_total counter\n# TYPE reactor_h histogram\n"
        "reactor_g 1.0\n"
    )
    assert {"reactor_x_total", "reactor_h_bucket", "reactor_g"} <= exposed(text)
    assert "reactor_y" not in exposed(text)


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=60, cwd=cwd)


def test_alerts_pass_promtool_check_rules() -> None:
    done = _run(_promtool(), "check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_alerts_fire_as_their_unit_tests_say() -> None:
    done = _run(_promtool(), "test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_cover_what_pages() -> None:
    alerts = {r["alert"]: r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    wanted = {
        "ReactorDeadLettersGrowing": "reactor_dead_letters_total",
        "ReactorLagGrowing": "reactor_consumer_lag",
        "ReactorRulesReloadFailing": "reactor_rules_last_reload_success",
        "ReactorCertificatesDueForRenewal": "reactor_cert_verdicts_total",
        "ReactorNotReady": "reactor_ready",
    }
    for name, metric in wanted.items():
        assert metric in alerts[name]
    tested = {
        t["alertname"]
        for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for t in case["alert_rule_test"]
    }
    assert set(alerts) <= tested  # every alert has a promtool unit test


def test_panel_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each panel's query as a recording rule, for promtool to parse (the variable as a regex)."""
    rules: dict[str, Any] = {
        "groups": [
            {
                "name": "panels",
                "rules": [
                    {"record": f"panel:{i}", "expr": q.replace("$instance", ".*")}
                    for i, q in enumerate(_panel_queries())
                ],
            }
        ]
    }
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    done = _run(_promtool(), "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


async def test_ready_gauge_follows_readyz(tmp_path: Path, unique: str) -> None:
    """``reactor_ready`` (what ReactorNotReady pages on) drops to 0 when the event store goes
    away, as /readyz does, and comes back with it."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.toml").write_text(RULES)
    private = PrivateRedis(tmp_path / "redis")
    private.start()
    try:
        settings = load_settings(
            None,
            redis={"url": private.url, "streams": [f"m{unique}.bootstrap"], "group": "g", "block_ms": 50},
            rules={"dir": tmp_path / "rules", "reload_interval_s": 0},
            state={"backend": "memory"},
            ops={"listen": "127.0.0.1:0", "backlog_interval_s": 0.05},
        )
        reactor = Reactor.build(settings, RedisStreamsSource(settings.redis), get_logger("test"))
        stop = asyncio.Event()
        tasks = [asyncio.create_task(reactor.run(stop)), asyncio.create_task(reactor.watch_backlog(stop))]
        gauge = reactor.metrics.ready
        try:
            async with asyncio.timeout(15):
                while gauge._value.get() != 1:
                    await asyncio.sleep(0.02)
                private.kill()
                while gauge._value.get() != 0:
                    await asyncio.sleep(0.02)
                await asyncio.to_thread(private.start)
                while gauge._value.get() != 1:
                    await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    finally:
        private.stop()


def test_dashboard_imports_cleanly() -> None:
    """What Grafana needs to import it anywhere: unique panel ids, a place on the grid, every
    query on the chosen data source, the instance variable applied to every query."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    assert all(
        {"h", "w", "x", "y"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        for p in panels
    )
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["instance"]["includeAll"] is True
    for panel in panels:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'instance=~"$instance"' in target["expr"], target["expr"]
