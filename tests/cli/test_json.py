"""``--json`` on the read verbs: one JSON document on stdout, the text form's facts and exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from reactor.cli import main
from reactor.ops.audit import AuditRow, SQLiteAudit
from tests.certs.corpus import Corpus
from tests.conftest import REDIS_URL

RULES = """
[[rule]]
name = "note"
on = ["config.create"]
[[rule.actions]]
type = "log"
message = "seen {{ event.thing_id }}"
"""


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_certs_inspect_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = Corpus()
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "ca.pem").write_text(corpus.root.pem)
    monkeypatch.setenv("REACTOR_CERTS__TRUST_DIR", str(trust))
    good, expired = tmp_path / "good.pem", tmp_path / "expired.pem"
    good.write_text(corpus.pem("valid"))
    expired.write_text(corpus.pem("expired"))
    code, doc = _run(capsys, "certs", "inspect", str(good), "--json")
    assert code == 0
    assert isinstance(doc, dict)
    assert doc["verdict"] == "ok"
    assert doc["days_left"] > 300
    code, doc = _run(capsys, "certs", "inspect", str(expired), "--json")
    assert code == 1
    assert isinstance(doc, dict)
    assert doc["verdict"] == "invalid"
    assert any(r.startswith("expired on") for r in doc["reasons"])


def test_rules_test_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(RULES)
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps({"operation": "config.create", "thing_id": "t1"})
        + "\n"
        + json.dumps({"operation": "thing.remove", "id": "t2"})
        + "\n"
    )
    args = ("rules", "test", "--event", str(events), "--rules", str(rules), "--json")
    code, doc = _run(capsys, *args)
    assert code == 1  # the second event matches nothing
    assert isinstance(doc, dict)
    first, second = doc["events"]
    assert first["matched"] == ["note"]
    assert first["ok"] is True
    assert first["rules"][0]["actions"][0]["params"] == {"message": "seen t1"}
    assert second["matched"] == []
    assert second["ok"] is False
    assert second["rules"][0]["reason"]
    events.write_text(json.dumps({"operation": "config.create", "thing_id": "t1"}) + "\n")
    assert _run(capsys, *args)[0] == 0
    (rules / "bad.toml").write_text("[[rule]]\nname = 1\n")
    code, doc = _run(capsys, *args)
    assert code == 2
    assert isinstance(doc, dict)
    assert doc["errors"]
    assert "bad.toml" in doc["errors"][0]


async def test_dlq_list_and_show_json(
    redis_client: aioredis.Redis,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = f"j{unique}.dlq"
    event = json.dumps({"operation": "config.create", "thing_id": "t1"})
    first = await redis_client.xadd(
        stream, {"reason": "action_failed", "rule": "note", "error": "boom", "event": event, "at_ns": "1"}
    )
    monkeypatch.setenv("REACTOR_REDIS__URL", REDIS_URL)
    monkeypatch.setenv("REACTOR_REDIS__DLQ_STREAM", stream)
    import asyncio

    code, doc = await asyncio.to_thread(_run, capsys, "dlq", "list", "--json")
    assert code == 0
    assert isinstance(doc, list)
    assert [r["id"] for r in doc] == [str(first)]
    assert doc[0]["event"] == {"operation": "config.create", "thing_id": "t1"}
    assert doc[0]["reason"] == "action_failed"
    code = await asyncio.to_thread(main, ["dlq", "show", str(first), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1  # one line, for jq and grep
    assert json.loads(out)["error"] == "boom"
    assert await asyncio.to_thread(main, ["dlq", "show", "1-1", "--json"]) == 1


async def test_history_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.sqlite3"
    audit = SQLiteAudit(path)
    row = AuditRow(
        1,
        "s",
        "1-0",
        "dev1",
        "config.create",
        "note",
        "log",
        "log",
        '{"message": "x"}',
        "success",
        1,
        0.5,
        "",
    )
    await audit.write([row])
    await audit.close()
    monkeypatch.setenv("REACTOR_STATE__BACKEND", "sqlite")
    monkeypatch.setenv("REACTOR_STATE__PATH", str(path))
    import asyncio

    code, doc = await asyncio.to_thread(_run, capsys, "history", "--thing", "dev1", "--json")
    assert code == 0
    assert isinstance(doc, list)
    assert doc[0]["params"] == {"message": "x"}
    assert doc[0]["outcome"] == "success"
    assert doc[0]["device"] == "dev1"
