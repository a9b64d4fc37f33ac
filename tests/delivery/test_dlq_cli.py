"""``reactor dlq list|show|purge`` on a real Redis."""

from __future__ import annotations

import json
import subprocess
import time

import redis.asyncio as aioredis

from reactor.sources.base import DeadLetter
from tests.conftest import REDIS_URL, reactor_cli


def cli(*args: str, dlq: str) -> subprocess.CompletedProcess[str]:
    return reactor_cli("dlq", *args, env={"REACTOR_REDIS__URL": REDIS_URL, "REACTOR_REDIS__DLQ_STREAM": dlq})


async def test_list_show_purge(redis_client: aioredis.Redis, unique: str) -> None:
    dlq = f"t{unique}.dlq"
    key = (
        "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
        "-----END PRIVATE KEY-----"
    )
    old = DeadLetter(
        "supermq.bootstrap",
        "1-0",
        "malformed",
        "no 'operation' field",
        {"x": "1"},
        at_ns=time.time_ns() - 3 * 3600 * 10**9,
    )
    new = DeadLetter(
        "supermq.bootstrap",
        "2-0",
        "action_failed",
        "HTTP 503",
        {"client_key": key, "thing_id": "t"},
        rule="onboard",
        action="activate (bootstrap.change_state)",
        status=503,
        attempts=5,
    )
    first = str(await redis_client.xadd(dlq, old.to_fields()))  # type: ignore[arg-type]
    second = str(await redis_client.xadd(dlq, new.to_fields()))  # type: ignore[arg-type]

    listed = cli("list", dlq=dlq)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[1].startswith(second)
    assert "action_failed" in lines[1]
    assert "onboard" in lines[1]
    assert lines[2].startswith(first)
    assert "malformed" in lines[2]
    recent = cli("list", "--since", "1h", dlq=dlq)
    assert first not in recent.stdout
    assert second in recent.stdout
    by_rule = cli("list", "--rule", "onboard", dlq=dlq)
    assert first not in by_rule.stdout
    assert second in by_rule.stdout

    shown = cli("show", second, dlq=dlq)
    record = json.loads(shown.stdout)
    assert record["event"]["client_key"] == "***"  # masked when written
    assert "MIIEvQ" not in shown.stdout
    assert (record["status"], record["attempts"], record["rule"]) == ("503", "5", "onboard")
    assert cli("show", "0-1", dlq=dlq).returncode == 1

    assert cli("purge", dlq=dlq).returncode == 2  # says what to purge
    purged = cli("purge", first, dlq=dlq)
    assert "purged 1 record(s)" in purged.stdout
    assert await redis_client.xlen(dlq) == 1
    assert "purged 1 record(s)" in cli("purge", "--all", dlq=dlq).stdout
    assert await redis_client.xlen(dlq) == 0


async def test_show_masks_a_record_an_older_version_wrote(redis_client: aioredis.Redis, unique: str) -> None:
    """Before #19 a malformed entry's raw payload was kept as it came (S1): shown masked now."""
    dlq = f"t{unique}.dlq"
    broken = '{"operation":"config.create","external_key":"ext-Key-old-8c1f","token":"tok-old-9f8e'
    url = "http.request POST http://hook:oldPass123@127.0.0.1:1/: connection refused"
    fields = {"stream": "s", "entry_id": "1-0", "reason": "malformed", "error": url, "at_ns": "1"}
    fields["event"] = json.dumps({"data": broken})
    record = str(await redis_client.xadd(dlq, fields))  # type: ignore[arg-type]
    out = cli("show", record, dlq=dlq).stdout + cli("list", dlq=dlq).stdout
    assert record in out
    for secret in ("ext-Key-old-8c1f", "tok-old-9f8e", "oldPass123"):
        assert secret not in out
