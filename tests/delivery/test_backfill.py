"""``reactor backfill`` waits for its group itself, not a fixed 0.2 s: a slow start still backfills
everything, and a run that fails ends the backfill with one line instead of waiting for ever."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from reactor.commands import backfill_command
from reactor.ops.logging import get_logger
from reactor.settings import Settings, load_settings
from reactor.sources.redis_streams import RedisStreamsSource
from tests.conftest import REDIS_URL, reactor_cli
from tests.servers import free_port

RULE = """
[[rule]]
name = "seen"
on = ["config.update"]
[[rule.actions]]
type = "log"
message = "seq {{ event.seq }}"
"""


def _settings(tmp_path: Path, unique: str) -> Settings:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "r.toml").write_text(RULE)
    return load_settings(
        None,
        redis={
            "url": REDIS_URL,
            "streams": [f"b{unique}.bootstrap"],
            "block_ms": 50,
            "dlq_stream": f"b{unique}.dlq",
        },
        events={"families": [f"b{unique}"]},
        rules={"dir": rules, "reload_interval_s": 0},
        state={"backend": "memory"},
        ops={"listen": "", "audit": False},
        supermq={"profile": "things", "bootstrap_url": f"http://127.0.0.1:{free_port()}"},
    )


async def test_backfill_waits_for_its_group_however_long_the_start_takes(
    tmp_path: Path,
    redis_client: aioredis.Redis,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _settings(tmp_path, unique)
    stream = settings.redis.streams[0]
    for seq in range(6):
        await redis_client.xadd(
            stream, {"operation": "config.update", "thing_id": f"t{seq}", "seq": str(seq)}
        )
    start = RedisStreamsSource.start

    async def slow_start(self: RedisStreamsSource) -> None:
        await asyncio.sleep(0.6)  # a slow event store: the group exists only after this
        await start(self)

    monkeypatch.setattr(RedisStreamsSource, "start", slow_start)
    group = f"rebuild{unique}"
    async with asyncio.timeout(20):
        code = await backfill_command(argparse.Namespace(group=group), settings, get_logger("test"))
    assert code == 0
    assert f"backfill {group}: 6 event(s), 6 rule match(es), 6 action(s) ok" in capsys.readouterr().out
    groups = await redis_client.xinfo_groups(stream)
    assert [(g["name"], g["pending"], g["lag"]) for g in groups] == [(group, 0, 0)]


async def test_a_backfill_whose_run_fails_ends_with_one_line(
    tmp_path: Path, redis_client: aioredis.Redis, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, unique)
    stream = settings.redis.streams[0]
    await redis_client.xadd(stream, {"operation": "config.update", "thing_id": "t1", "seq": "1"})

    async def broken_settle(self: RedisStreamsSource, done: object, dead: object) -> None:
        raise RuntimeError("settling broke")

    monkeypatch.setattr(RedisStreamsSource, "settle", broken_settle)
    async with asyncio.timeout(20):
        with pytest.raises(Exception, match="settler failed: RuntimeError: settling broke"):
            await backfill_command(argparse.Namespace(group=f"rebuild{unique}"), settings, get_logger("test"))


def test_a_backfill_with_the_event_store_down_ends_with_one_line() -> None:
    env = {
        "REACTOR_REDIS__URL": f"redis://127.0.0.1:{free_port()}/0",
        "REACTOR_STATE__BACKEND": "memory",
        "REACTOR_OPS__AUDIT": "false",
    }
    result = reactor_cli("backfill", "--group", "never", env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("reactor: XINFO GROUPS supermq.bootstrap: "), result.stderr
