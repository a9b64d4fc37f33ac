"""Operator errors: a bad setting, a missing file or a closed pipe is one clear line naming it,
never a Python traceback; an unknown ``REACTOR_`` variable is warned about, not ignored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REDIS_URL, REPO, reactor_cli


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


def _one_clear_line(result: subprocess.CompletedProcess[str], *names: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for name in names:
        assert name in result.stderr, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("text", "command", "names"),
    [
        ('[supermq]\nproxy = "not a url"\n', ["rules", "check"], ["supermq.proxy", "not a url"]),
        ('[supermq]\nproxy = "not a url"\n', ["status"], ["supermq.proxy"]),
        ('[supermq]\nproxy = "socks5://127.0.0.1:1080"\n', ["rules", "check"], ["supermq.proxy", "socks5"]),
        ('[redis]\nurl = "http://127.0.0.1:6379"\n', ["status"], ["redis.url", "redis://"]),
        ('[nats]\nurl = "http://127.0.0.1:4222"\n', ["rules", "check"], ["nats.url"]),
        ('[rabbitmq]\nurl = "redis://127.0.0.1"\n', ["rules", "check"], ["rabbitmq.url"]),
    ],
)
def test_a_bad_url_setting_names_the_key(
    tmp_path: Path, text: str, command: list[str], names: list[str]
) -> None:
    result = reactor_cli("--config", _config(tmp_path, text), *command)
    _one_clear_line(result, *names)


def test_a_list_variable_that_is_not_json_names_the_variable() -> None:
    result = reactor_cli("rules", "check", env={"REACTOR_REDIS__STREAMS": "not json"})
    err = _one_clear_line(result, "REACTOR_REDIS__STREAMS", "JSON")
    assert "None" not in err


def test_an_unknown_reactor_variable_is_warned_about() -> None:
    result = reactor_cli("rules", "check", env={"REACTOR_BOGUS": "1", "REACTOR_REDIS_URL": "redis://x"})
    assert result.returncode == 0, result.stderr
    assert "REACTOR_BOGUS" in result.stderr
    assert "REACTOR_REDIS_URL" in result.stderr  # one underscore: a typo of REACTOR_REDIS__URL
    assert "REACTOR_REDIS__URL" in result.stderr
    quiet = reactor_cli("rules", "check", env={"REACTOR_LOG__LEVEL": "debug"})
    assert quiet.returncode == 0
    assert "warning" not in quiet.stderr


def test_the_daemon_logs_an_unknown_reactor_variable(tmp_path: Path) -> None:
    """``reactor run`` says it in its log (JSON lines), not as a bare line among them."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text('[[rule]]\nname = "n"\non = ["x.y"]\n[[rule.actions]]\ntype = "noop"\n')
    config = _config(
        tmp_path,
        f'source = "memory"\n[rules]\ndir = "{rules}"\n[ops]\nlisten = ""\n[supermq]\nprofile = "things"\n',
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "reactor", "--config", config, "run"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "REACTOR_REDIS_URL": "redis://x"},
    )
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert first["event"] == "settings.unknown_variable"
    assert first["variable"] == "REACTOR_REDIS_URL"
    assert "REACTOR_REDIS__URL" in first["hint"]
    assert proc.returncode == 0


@pytest.mark.parametrize("since", ["99999999d", "9" * 400 + "d"])
def test_a_since_before_1970_is_one_line(tmp_path: Path, since: str) -> None:
    env = {"REACTOR_STATE__PATH": str(tmp_path / "s.sqlite3")}
    result = reactor_cli("history", "--thing", "x", "--since", since, env=env)
    _one_clear_line(result, "--since")


def test_replay_of_a_missing_file_names_it() -> None:
    _one_clear_line(reactor_cli("replay", "/nonexistent"), "/nonexistent")


def test_certs_inspect_of_a_missing_file_names_it(tmp_path: Path) -> None:
    _one_clear_line(reactor_cli("certs", "inspect", "/nonexistent.pem"), "/nonexistent.pem")
    pem = tmp_path / "c.pem"
    pem.write_text("not a pem")
    result = reactor_cli("certs", "inspect", str(pem), "--key", "/nonexistent.key")
    _one_clear_line(result, "/nonexistent.key")


def test_a_closed_pipe_ends_quietly(unique: str) -> None:
    """``reactor dlq list | head``: the reader went away; no traceback, no BrokenPipeError."""
    env = {**os.environ, "REACTOR_REDIS__URL": REDIS_URL, "REACTOR_REDIS__DLQ_STREAM": f"pipe{unique}.dlq"}
    command = [sys.executable, "-m", "reactor", "dlq", "list"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()  # as head does once it has its lines
        err = proc.stderr.read().decode()
        proc.wait(60)
    assert "Traceback" not in err, err
    assert "BrokenPipe" not in err, err
    assert proc.returncode in (0, 141), proc.returncode  # 141: 128 + SIGPIPE, as a shell reports it
