"""``reactor enroll check``, ``reactor provision [--dry-run]`` and the provisioning line of
``reactor status``, run as the command, against the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from reactor.ops.audit import AuditRow, SQLiteAudit
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator
from tests.conftest import reactor_cli
from tests.provision.test_zero_touch import ENROLLMENTS, GROUP_SECRET, KEY, TEMPLATE

REDIS_URL = os.environ.get("REACTOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/8")
ENV = {"ZT_DEV_001_KEY": KEY, "ZT_FACTORY_A_SECRET": GROUP_SECRET}


def config(tmp_path: Path, sim: Simulator) -> Path:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "sensor.toml").write_text(TEMPLATE)
    (tmp_path / "enrollments.toml").write_text(ENROLLMENTS)
    (tmp_path / "rules").mkdir()
    profile = sim.state.profile
    urls = "\n".join(f'{s}_url = "{sim.url(s)}"' for s in sim.services)
    if profile == "clients":  # SuperMQ HEAD: every route sits under the domain
        urls += f'\ndomain_id = "{sim.state.domain_id}"'
    path = tmp_path / "reactor.toml"
    path.write_text(
        f'[redis]\nurl = "{REDIS_URL}"\nstreams = ["zt-test-{time.time_ns()}"]\n\n'
        f'[rules]\ndir = "{tmp_path / "rules"}"\n\n'
        f'[state]\npath = "{tmp_path / "state.sqlite3"}"\n\n'
        f'[supermq]\nprofile = "{profile}"\n'
        f'identity = "{sim.state.identity}"\nsecret = "{sim.state.secret}"\n'
        f"{urls}\n\n"
        f'[provision]\nenrollments = ["{tmp_path / "enrollments.toml"}"]\n'
        f'templates_dir = "{tmp_path / "templates"}"\n'
    )
    return path


async def cli(*args: str) -> tuple[int, str, str]:
    done = await asyncio.to_thread(reactor_cli, *args, env=ENV)
    return done.returncode, done.stdout, done.stderr


async def test_enroll_check_shows_the_plan_with_the_key_masked(tmp_path: Path) -> None:
    async with Simulator() as sim:
        path = config(tmp_path, sim)
        code, out, err = await cli("--config", str(path), "enroll", "check", "dev-001")
        assert code == 0, err
        shown = json.loads(out)
        assert shown["enrollment"]["template"] == "sensor"
        assert shown["enrollment"]["external_key"] == f"***({len(KEY)} chars)"
        assert [c["name"] for c in shown["plan"]["channels"]] == ["dev-001-data", "dev-001-control"]
        assert KEY not in out + err
        code, out, _ = await cli("--config", str(path), "enroll", "check", "stranger-1")
        assert code == 1
        assert "'stranger-1' is not enrolled" in out
        assert sim.exchanges == [], "enroll check reads only the files"


@pytest.mark.parametrize("profile", ["things", "clients"])
async def test_provision_by_hand_with_a_dry_run_first(tmp_path: Path, profile: str) -> None:
    async with Simulator(profile=profile) as sim:
        path = config(tmp_path, sim)
        code, out, err = await cli("--config", str(path), "provision", "dev-001", "--dry-run")
        assert code == 0, err
        steps = json.loads(out)["steps"]
        assert steps["thing"] == "create"
        assert steps["config"] == "create"
        assert set(steps["channels"].values()) == {"create"}
        assert sim.state.things == {}
        assert sim.state.channels == {}

        code, out, err = await cli("--config", str(path), "provision", "dev-001")
        assert code == 0, err
        thing_id = json.loads(out)["thing_id"]
        assert KEY not in out + err
        client = SuperMQClient(sim.settings())
        try:
            assert (await client.device_config("dev-001", KEY)).thing_id == thing_id
        finally:
            await client.aclose()

        code, out, _ = await cli("--config", str(path), "provision", "dev-001", "--dry-run")
        steps = json.loads(out)["steps"]
        assert steps["thing"] == f"reuse {thing_id}"
        assert steps["activate"] == "done"
        assert all(v.startswith("reuse ") for v in steps["channels"].values())
        code, out, _ = await cli("--config", str(path), "provision", "stranger-1")
        assert code == 1
        assert out.startswith("refused: ")


async def test_status_lists_enrollments_and_todays_provisionings(tmp_path: Path) -> None:
    async with Simulator() as sim:
        path = config(tmp_path, sim)
        audit = SQLiteAudit(tmp_path / "state.sqlite3")
        now = time.time_ns()

        def row(outcome: str, error: str) -> AuditRow:
            return AuditRow(
                now,
                "s",
                "1-0",
                "d",
                "thing.bootstrap",
                "zt",
                "provision",
                "provision",
                "{}",
                outcome,
                1,
                1.0,
                error,
            )

        await audit.write([row("success", ""), row("failed", "'x' is not enrolled"), row("failed", "boom")])
        await audit.close()
        code, out, err = await cli("--config", str(path), "status")
        assert code == 0, err
        assert (
            "provisioning: 1 enrollments, 1 groups, 1 templates; today: 1 provisioned, 1 refused, 1 failed"
            in out
        )


async def test_enroll_check_json_says_both_answers_as_json(tmp_path: Path) -> None:
    """``--json``, as on every read verb: the plan, or why not, one JSON document a script reads."""
    async with Simulator() as sim:
        path = config(tmp_path, sim)
        code, out, err = await cli("--config", str(path), "enroll", "check", "--json", "dev-001")
        assert code == 0, err
        assert json.loads(out)["enrolled"] is True
        assert KEY not in out + err
        code, out, _ = await cli("--config", str(path), "enroll", "check", "--json", "stranger-1")
        assert code == 1
        refused = json.loads(out)
        assert (refused["enrolled"], refused["external_id"]) == (False, "stranger-1")
        assert "'stranger-1' is not enrolled" in refused["reason"]
