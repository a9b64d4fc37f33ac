"""CLI inputs a hostile review found ending in a traceback: each is one line and its exit code."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import reactor_cli
from tests.servers import free_port


def _config(tmp_path: Path) -> Path:
    down = free_port()  # nothing listens: SuperMQ is down
    path = tmp_path / "c.toml"
    path.write_text(
        "[supermq]\n"
        + "".join(f'{s}_url = "http://127.0.0.1:{down}"\n' for s in ("users", "things", "bootstrap", "certs"))
        + 'identity = "a@example.com"\nsecret = "x"\n[state]\nbackend = "memory"\n[ops]\naudit = false\n'
    )
    return path


def test_certs_inspect_with_an_empty_thing_is_a_usage_error(tmp_path: Path) -> None:
    result = reactor_cli("--config", str(_config(tmp_path)), "certs", "inspect", "--thing", "")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "--thing" in result.stderr


def test_certs_inspect_and_sweep_with_supermq_down_are_one_line(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    for args in (("certs", "inspect", "--thing", "abc"), ("certs", "sweep", "--dry-run")):
        result = reactor_cli("--config", config, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr, args
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("reactor: "), result.stderr


def test_simulate_supermq_with_a_port_base_out_of_range_is_a_usage_error() -> None:
    for base in ("70000", "-1"):
        result = reactor_cli("simulate-supermq", "--port-base", base)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert "--port-base" in result.stderr


def test_simulate_supermq_help_says_how_to_log_in() -> None:
    """Its start message says 'see --help' for the secret: the help must say it."""
    result = reactor_cli("simulate-supermq", "--help")
    assert "12345678" in result.stdout
