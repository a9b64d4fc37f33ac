"""The shipped zero-touch rule in the daemon (worker, lanes, settle, audit, dead letters) over an
in-memory source, against the simulator (v0.14.0, OpenAPI-checked): a refused device fetch turns
into a provisioned device; an unenrolled one and a failure at the last step are dead-lettered
with the reason and the step."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from reactor.app import Reactor
from reactor.errors import PermanentError
from reactor.ops.logging import get_logger
from reactor.provision.enrollments import derive_key
from reactor.settings import load_settings
from reactor.sources.memory import MemorySource
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator
from tests.provision.test_zero_touch import GROUP_SECRET, KEY, layout  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parents[2]


def attempt(external_id: str) -> tuple[str, dict[str, Any]]:
    fields = {"operation": "thing.bootstrap", "external_id": external_id, "success": "0"}
    return "magistrala.bootstrap", fields


async def run_daemon(sim: Simulator, layout: Path, events: list[tuple[str, dict[str, Any]]]) -> Any:  # noqa: F811
    rules = layout / "rules"
    shipped = (REPO / "rules" / "zero-touch.toml").read_text()
    (rules / "zero-touch.toml").write_text(shipped.replace("enabled = false", "enabled = true"))
    settings = load_settings(
        None,
        source="memory",
        rules={"dir": str(rules), "reload_interval_s": 0},
        supermq=sim.settings().model_dump(),
        retry={"attempts": 1},
        provision={
            "enrollments": [str(layout / "enrollments.toml")],
            "templates_dir": str(layout / "templates"),
        },
        ops={"listen": ""},
    )
    source = MemorySource(events)
    reactor = Reactor.build(settings, source, get_logger("test"))
    await asyncio.wait_for(reactor.run(asyncio.Event()), 30)
    return reactor, source


async def test_the_daemon_provisions_refuses_and_dead_letters_with_the_step(
    tmp_path: Path,
    layout: Path,  # noqa: F811 - the fixture
) -> None:
    async with Simulator() as sim:
        client = SuperMQClient(sim.settings())
        try:
            with pytest.raises(PermanentError):
                await client.device_config("dev-001", KEY)
            sim.faults.fail_next(1, 400, path_prefix="/things/state/", method="PUT")
            reactor, source = await run_daemon(
                sim, layout, [attempt("dev-001"), attempt("stranger-1"), attempt("fa-9")]
            )
            served = await client.device_config("fa-9", derive_key(GROUP_SECRET, "fa-9"))
        finally:
            await client.aclose()
        letters = {json.dumps(d.event.get("external_id")): d for d in source.dead_letters}
        failed = letters['"dev-001"']
        assert failed.rule == "zero-touch-provision"
        assert failed.action == "provision (provision)"
        assert "failed at step 'activate'" in failed.error
        assert KEY not in failed.error
        assert "'stranger-1' is not enrolled" in letters['"stranger-1"'].error
        assert set(letters) == {'"dev-001"', '"stranger-1"'}
        assert len(served.channels) == 2, "the group device is served"
        assert [t.name for t in sim.state.things.values()] == ["fa-9"], "dev-001's thing undone"
        assert reactor.audit is not None
        rows = await reactor.audit.query(rule="zero-touch-provision")
        errors = " | ".join(r.error for r in rows if r.outcome == "failed")
        assert "'stranger-1' is not enrolled" in errors
        assert "failed at step 'activate'" in errors
        assert sim.contract is not None
        assert sim.contract.violations == []


def head_attempt(external_id: str, n: int) -> tuple[str, dict[str, Any]]:
    """A failed attempt as SuperMQ HEAD publishes it (bootstrap/events/producer/events.go
    bootstrapEvent: JSON in ``data``, ``success`` a boolean, one stream per operation)."""
    data = {
        "external_id": external_id,
        "occurred_at": 1796110416000000000 + n,
        "operation": "bootstrap.client.bootstrap",
        "success": False,
    }
    return "events.magistrala.bootstrap.client.bootstrap", {"data": json.dumps(data)}


async def test_the_daemon_provisions_on_the_clients_profile_from_head_events(
    tmp_path: Path,
    layout: Path,  # noqa: F811 - the fixture
) -> None:
    """SuperMQ HEAD: the shipped rule turns HEAD-shaped failed attempts into provisioned clients
    (every exchange checked against the HEAD documents); a failure at activation is undone and
    dead-lettered with the step; an unenrolled device creates nothing."""
    async with Simulator(profile="clients") as sim:
        client = SuperMQClient(sim.settings())
        try:
            with pytest.raises(PermanentError):
                await client.device_config("dev-001", KEY)
            sim.faults.fail_next(1, 400, path_prefix=f"/{sim.state.domain_id}/clients/state/", method="PUT")
            events = [head_attempt("dev-001", 1), head_attempt("stranger-1", 2), head_attempt("fa-9", 3)]
            reactor, source = await run_daemon(sim, layout, events)
            served = await client.device_config("fa-9", derive_key(GROUP_SECRET, "fa-9"))
        finally:
            await client.aclose()
        # HEAD's fields are JSON in ``data``: the dead letter keeps the event as it came
        letters = {json.dumps(json.loads(d.event["data"])["external_id"]): d for d in source.dead_letters}
        assert set(letters) == {'"dev-001"', '"stranger-1"'}
        assert "failed at step 'activate'" in letters['"dev-001"'].error
        assert KEY not in letters['"dev-001"'].error
        assert "'stranger-1' is not enrolled" in letters['"stranger-1"'].error
        assert sorted(c.name for c in served.channels) == ["fa-9-control", "fa-9-data"]
        assert {(served.thing_id, c.id, k) for c in served.channels for k in ("publish", "subscribe")} <= (
            sim.state.typed_connections
        ), "activation connects the client for publish and subscribe"
        assert [t.name for t in sim.state.things.values()] == ["fa-9"], "dev-001's client undone"
        assert reactor.audit is not None
        rows = await reactor.audit.query(rule="zero-touch-provision")
        assert "'stranger-1' is not enrolled" in " | ".join(r.error for r in rows if r.outcome == "failed")
        assert sim.contract is not None
        assert sim.contract.violations == []
