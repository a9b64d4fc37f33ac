"""``reactor rules test --event`` / ``replay FILE`` read what ``redis-cli XRANGE`` really prints:
the plain form (its output piped or saved to a file) and the quoted form (``--no-raw``), with
UTF-8 intact in both."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis.asyncio as aioredis

from reactor.events.textforms import parse_event_text
from tests.conftest import REDIS_URL, reactor_cli

FIELDS = {
    "operation": "config.create",
    "thing_id": "3376c949-b955-4f33-af46-6bf2ff0fdb10",
    "external_id": "ext-1",
    "channels": "[0cbd957b, 94a704da]",
    "name": "Gerät café ✓ 東京",
    "content": '{"greeting":"grüß dich","quote":"say \\"hi\\""}',
    "state": "0",
    "updated_by": "",  # Mainflux publishes empty values (thing.remove): a blank line in the plain form
    "occurred_at": "1796110324815271082",
}


def _redis_cli(stream: str, *flags: str) -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        pytest.skip("redis-cli is not installed")
    url = urlparse(REDIS_URL)
    cmd = [
        binary,
        "-h",
        url.hostname or "127.0.0.1",
        "-p",
        str(url.port or 6379),
        "-n",  # the test's own database (REACTOR_TEST_REDIS_URL's path), not redis-cli's default 0
        url.path.strip("/") or "0",
        *flags,
        "XRANGE",
        stream,
        "-",
        "+",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=10).stdout


@pytest.mark.parametrize("flags", [(), ("--no-raw",)], ids=["plain", "no-raw"])
async def test_both_forms_of_xrange_output_read_back_exactly(
    redis_client: aioredis.Redis, unique: str, flags: tuple[str, ...]
) -> None:
    stream = f"cli{unique}.bootstrap"
    first = await redis_client.xadd(stream, dict(FIELDS))  # type: ignore[arg-type]
    second = await redis_client.xadd(
        stream, {"operation": "thing.bootstrap", "external_id": "ext-1", "success": "0", "last": ""}
    )
    text = _redis_cli(stream, *flags)
    events = parse_event_text(text)
    assert [e.entry_id for e in events] == [first, second]
    assert events[0].payload == FIELDS
    assert events[1].payload == {
        "operation": "thing.bootstrap",
        "external_id": "ext-1",
        "success": "0",
        "last": "",
    }


async def test_rules_test_takes_plain_redis_cli_output(
    redis_client: aioredis.Redis, unique: str, tmp_path: Path
) -> None:
    stream = f"cli{unique}.bootstrap"
    await redis_client.xadd(stream, dict(FIELDS))  # type: ignore[arg-type]
    saved = tmp_path / "events.txt"
    saved.write_text(_redis_cli(stream), encoding="utf-8")  # as `redis-cli XRANGE ... > events.txt`
    result = reactor_cli("rules", "test", "--event", str(saved), "--stream", "mainflux.bootstrap")
    assert result.returncode in (0, 1), result.stderr
    assert "onboard-new-config" in result.stdout
    assert "Traceback" not in result.stderr
