"""Private servers for fault tests: a redis-server, nats-server or rabbitmq-server of our own on a
free port, that tests may kill and restart (with persistence, so what the server acknowledged
survives). The machine's own servers (6379, 4222, 5672) are never touched."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import missing_server

#: Below Linux's ephemeral range (32768-60999): a port the kernel hands out for outgoing
#: connections can be taken by one while a private server is down between a kill and its
#: restart, and the restart then fails to bind. Ports here are never handed out that way.
_LISTEN_PORTS = range(20_000, 32_000)


def free_port(block: int = 1) -> int:
    """A port (the first of ``block`` consecutive ones) free to listen on, outside the ephemeral range."""
    for _ in range(200):
        base = random.randrange(_LISTEN_PORTS.start, _LISTEN_PORTS.stop - block)
        if all(_bindable(base + i) for i in range(block)):
            return base
    raise RuntimeError("no free port block found for a test server")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class _PrivateServer:
    """A server process in a directory of its own; ``start`` waits until it answers."""

    binary_name = ""
    scheme = ""
    start_timeout_s = 10.0
    #: Run in a session of its own and kill the whole group (a wrapper script's children too).
    own_group = False

    def __init__(self, directory: Path, port: int | None = None) -> None:
        binary = shutil.which(self.binary_name)
        if binary is None:
            missing_server(f"{self.binary_name} (binary, for a private server)")
        self.binary = str(binary)
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        """The server's environment (None: this process's)."""
        return None

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.directory,  # where a server writes what it writes beside its data (crash dumps)
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=self.own_group,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"private {self.binary_name} on {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown; only what the server made durable survives."""
        if self.proc is not None:
            if self.own_group:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self, down_s: float = 0.5) -> None:
        self.kill()
        time.sleep(down_s)
        self.start()

    def stop(self) -> None:
        self.kill()


class PrivateRedis(_PrivateServer):
    """``redis-server`` with an append-only file fsynced on every write (``persistent = False``:
    none, for runs that are not about durability)."""

    binary_name = "redis-server"
    scheme = "redis"
    persistent = True

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            *(
                ("--appendonly", "yes", "--appendfsync", "always")
                if self.persistent
                else ("--appendonly", "no")
            ),
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class PrivateNats(_PrivateServer):
    """``nats-server -js`` with file storage in its directory."""

    binary_name = "nats-server"
    scheme = "nats"

    def command(self) -> list[str]:
        return [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.directory)]

    def answers(self) -> bool:
        if not super().answers():
            return False
        time.sleep(0.2)  # JetStream comes up just after the listener
        return True


_RABBIT_SCRIPTS = "/usr/lib/rabbitmq/bin"


class PrivateRabbit(_PrivateServer):
    """``rabbitmq-server`` as a node of its own beside the machine's (its own node name, AMQP and
    distribution ports, data directory, Erlang cookie; no plugins). About 9 s to start here, as
    long to restart: the fault test restarts it once."""

    binary_name = "rabbitmq-server"
    scheme = "amqp"
    start_timeout_s = 60.0
    own_group = True  # the script runs beam.smp as its child

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(directory, port or free_port(block=2))  # AMQP, then distribution
        script = shutil.which("rabbitmq-server", path=_RABBIT_SCRIPTS)
        if script is not None:  # Debian's /usr/sbin one switches user, dropping this environment
            self.binary = script

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        return [self.binary]

    def env(self) -> dict[str, str]:
        d = self.directory
        (d / "home").mkdir(parents=True, exist_ok=True)
        (d / "enabled_plugins").write_text("[].\n")
        (d / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        return {
            **os.environ,
            "HOME": str(d / "home"),  # its own Erlang cookie
            "RABBITMQ_NODENAME": f"reactor-test-{self.port}@localhost",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.port + 1),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": "/dev/null",  # not the machine's node name and listener
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
