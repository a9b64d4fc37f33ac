"""Progress and styled output: rich on a terminal, plain text without escape codes or carriage
returns when the output is a pipe or a file."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from reactor.certs.sweep import SweepSummary, print_summary
from reactor.cli import main
from reactor.doctor import Check, print_checks
from reactor.ops.console import progress
from tests.conftest import REDIS_URL, reactor_cli

CHECKS = [
    Check("rules", "load rules", True, "2 rule(s)"),
    Check("trust", "anchors", False, "0", "add [CA] pems"),
]


def _terminal() -> tuple[int, io.TextIOWrapper]:
    master, slave = os.openpty()
    return master, os.fdopen(slave, "w")


def _read(master: int) -> bytes:
    os.set_blocking(master, False)
    chunks = b""
    try:
        while chunk := os.read(master, 65536):
            chunks += chunk
    except BlockingIOError:
        pass
    return chunks


def test_progress_in_a_pipe_is_one_plain_line() -> None:
    out = io.StringIO()
    show = progress("replay", out)
    for done in range(4):
        show(done, 3)
    assert out.getvalue() == "replay: 3/3\n"


def test_progress_on_a_terminal_is_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    master, terminal = _terminal()
    with terminal:
        show = progress("replay", terminal)
        for done in range(4):
            show(done, 3)
        terminal.flush()
        drawn = _read(master)
    os.close(master)
    assert b"\x1b[" in drawn  # drawn in place, with escape codes
    assert b"3/3" in drawn
    assert "━".encode() in drawn or b"-" in drawn


def test_checklist_plain_and_styled(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    print_checks(CHECKS, out)
    text = out.getvalue()
    assert "\x1b" not in text
    assert "  [FAIL] anchors: 0\n         fix: add [CA] pems\n" in text  # markup in a fix is text
    monkeypatch.setenv("TERM", "xterm")
    master, terminal = _terminal()
    with terminal:
        print_checks(CHECKS, terminal)
        terminal.flush()
        styled = _read(master)
    os.close(master)
    assert b"\x1b[" in styled
    assert b"FAIL" in styled
    assert b"add [CA] pems" in styled


def test_replay_progress_through_a_pipe_has_no_escape_codes(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(
        '[[rule]]\nname = "n"\non = ["config.create"]\n[[rule.actions]]\ntype = "log"\nmessage = "x"\n'
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(json.dumps({"operation": "config.create", "thing_id": f"t{i}"}) + "\n" for i in range(5))
    )
    done = reactor_cli("replay", str(events), env={"REACTOR_RULES__DIR": str(rules)})
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr
    assert done.stderr.splitlines() == ["replay: 5/5"]  # one line, not a bar redrawn per event


async def test_dlq_list_is_a_table_on_a_terminal_and_plain_in_a_pipe(
    redis_client: aioredis.Redis, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = f"c{unique}.dlq"
    await redis_client.xadd(
        stream, {"reason": "action_failed", "rule": "note", "error": "boom [x]", "event": "{}", "at_ns": "1"}
    )
    monkeypatch.setenv("REACTOR_REDIS__URL", REDIS_URL)
    monkeypatch.setenv("REACTOR_REDIS__DLQ_STREAM", stream)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "200")  # a new pty has no size
    master, terminal = _terminal()
    with terminal:
        monkeypatch.setattr(sys, "stdout", terminal)
        assert await asyncio.to_thread(main, ["dlq", "list"]) == 0
        terminal.flush()
        drawn = _read(master).decode()
    os.close(master)
    assert "┏" in drawn  # a drawn table
    text = re.sub(r"\x1b\[[0-9;]*m", "", drawn)
    assert "┃ id " in text
    assert "boom [x]" in drawn  # cells are text, not markup
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stdout", piped)
    assert await asyncio.to_thread(main, ["dlq", "list"]) == 0
    assert "\x1b" not in piped.getvalue()
    assert piped.getvalue().startswith("id ")  # the plain table, as before


def test_sweep_summary_table_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    summary = SweepSummary(total=3, ok=2, renew=1)
    plain = io.StringIO()
    print_summary(summary, plain, dry_run=True)
    assert plain.getvalue().startswith("dry run: nothing was changed\n  configs")
    monkeypatch.setenv("TERM", "xterm")
    master, terminal = _terminal()
    with terminal:
        print_summary(summary, terminal, dry_run=True)
        terminal.flush()
        drawn = _read(master).decode()
    os.close(master)
    assert "due for renewal" in drawn
    assert "\x1b[" in drawn
