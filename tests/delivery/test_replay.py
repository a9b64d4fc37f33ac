"""``reactor replay`` (file and stream forms, dry run and --apply) and ``reactor backfill``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.conftest import REDIS_URL, reactor_cli

RULE = """
[[rule]]
name = "seen"
on = ["config.update"]
[[rule.actions]]
type = "log"
message = "seq {{ event.seq }}"
"""


def cli(tmp_path: Path, *args: str, stream: str = "supermq.bootstrap") -> subprocess.CompletedProcess[str]:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "r.toml").write_text(RULE)
    env = {
        "REACTOR_REDIS__URL": REDIS_URL,
        "REACTOR_RULES__DIR": str(rules),
        "REACTOR_REDIS__STREAMS": json.dumps([stream]),
        "REACTOR_STATE__BACKEND": "memory",
        "REACTOR_OPS__AUDIT": "false",
        "REACTOR_REDIS__DLQ_STREAM": f"{stream}.dlq",
    }
    return reactor_cli(*args, env=env)


def test_replay_a_file_dry_run_and_apply(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            json.dumps({"operation": "config.update", "thing_id": f"t{i}", "seq": str(i)}) for i in range(5)
        )
        + '\n{"operation": "user.view", "id": "u"}\n'
    )
    dry = cli(tmp_path, "replay", str(events))
    assert dry.returncode == 0, dry.stderr
    assert "dry run (use --apply to act): 6 event(s), 0 malformed" in dry.stdout
    assert "seen" in dry.stdout
    assert dry.stdout.split("seen")[1].split()[0] == "5"
    applied = cli(tmp_path, "replay", str(events), "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "applied: 6 event(s)" in applied.stdout
    assert "acted on: 6, dead-lettered: 0" in applied.stdout


async def test_replay_a_stream_range_and_backfill(
    tmp_path: Path, redis_client: aioredis.Redis, unique: str
) -> None:
    stream = f"r{unique}.bootstrap"
    ids = [
        str(await redis_client.xadd(stream, {"operation": "config.update", "thing_id": "t", "seq": str(i)}))
        for i in range(6)
    ]
    dry = cli(tmp_path, "replay", "--stream", stream, "--from", ids[1], "--to", ids[3], stream=stream)
    assert dry.returncode == 0, dry.stderr
    assert "3 event(s)" in dry.stdout
    applied = cli(tmp_path, "replay", "--stream", stream, "--apply", stream=stream)
    assert "acted on: 6" in applied.stdout
    backfill = cli(tmp_path, "backfill", "--group", f"rebuild{unique}", stream=stream)
    assert backfill.returncode == 0, backfill.stderr
    assert f"backfill rebuild{unique}: 6 event(s), 6 rule match(es), 6 action(s) ok" in backfill.stdout
    groups = {str(g["name"]): g for g in await redis_client.xinfo_groups(stream)}
    assert int(groups[f"rebuild{unique}"]["pending"]) == 0


def test_replay_needs_a_source(tmp_path: Path) -> None:
    result = cli(tmp_path, "replay")
    assert result.returncode == 2
    assert "name a FILE or a --stream" in result.stderr


@pytest.mark.parametrize("bad", ["yesterday", "12:00"])
def test_bad_range(tmp_path: Path, bad: str) -> None:
    result = cli(tmp_path, "replay", "--stream", "x", "--from", bad)
    assert result.returncode == 2
    assert "--from/--to" in result.stderr
