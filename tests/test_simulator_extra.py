"""The simulator is an optional extra (``supermq-reactor[simulator]``): the daemon never loads it,
and the commands that need it say how to install it when it is not there."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

#: What only the simulator needs: openapi-core, PyYAML and the simulator itself.
SIMULATOR_ONLY = ("openapi_core", "yaml", "reactor.supermq.simulator")

_BUILD_THE_DAEMON = """
import sys
from reactor.cli import build_parser  # everything `reactor run` imports before it starts
from reactor.app import Reactor
from reactor.ops.logging import get_logger
from reactor.settings import load_settings
from reactor.sources.memory import MemorySource

build_parser().parse_args(["run"])
Reactor.build(load_settings(None, source="memory"), MemorySource([]), get_logger())
print([p for p in SIMULATOR_ONLY if any(m == p or m.startswith(p + ".") for m in sys.modules)])
""".replace("SIMULATOR_ONLY", repr(SIMULATOR_ONLY))


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def test_building_the_daemon_loads_nothing_of_the_simulator() -> None:
    result = _python(_BUILD_THE_DAEMON)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_without_the_extra_the_simulator_commands_say_how_to_install_it() -> None:
    for command in (["demo"], ["simulate-supermq"]):
        result = _python(
            "import sys\n"
            "sys.modules['openapi_core'] = None  # as if supermq-reactor[simulator] were not installed\n"
            "from reactor.cli import main\n"
            f"sys.exit(main({command!r}))\n"
        )
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 2, (result.returncode, result.stderr)
        assert result.stderr.strip().splitlines() == [
            "reactor: the SuperMQ simulator is an optional extra: pip install 'supermq-reactor[simulator]' "
            "(openapi_core is not installed)"
        ], result.stderr
