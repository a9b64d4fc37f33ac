"""``reactor doctor`` on a healthy setup (the simulator, real Redis) and on each failure it names,
each with its fix."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from reactor.app import build_registry
from reactor.cli import main
from reactor.doctor import Check, diagnose, print_checks
from reactor.ops.logging import get_logger
from reactor.settings import Settings, load_settings
from reactor.supermq.client import SuperMQClient
from reactor.supermq.simulator import Simulator
from tests.certs.corpus import Corpus
from tests.conftest import REDIS_URL
from tests.servers import free_port
from tests.sources.backends import BACKENDS, Backend

RULES = """
[[rule]]
name = "activate"
on = ["config.create"]
[[rule.actions]]
type = "bootstrap.change_state"
config_id = "{{ event.thing_id }}"
state = 1
"""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(validate=False) as simulator:
        yield simulator


def _settings(tmp_path: Path, sim: Simulator, unique: str, **overrides: Any) -> Settings:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "r.toml").write_text(RULES)
    trust = tmp_path / "trust"
    trust.mkdir(exist_ok=True)
    (trust / "ca.pem").write_text(Corpus().root.pem)
    settings = load_settings(
        None,
        redis={
            "url": overrides.pop("redis_url", REDIS_URL),
            "streams": [f"d{unique}.bootstrap"],
            "group": "g",
        },
        rules={"dir": rules},
        certs={"trust_dir": trust},
        state={"backend": "sqlite", "path": tmp_path / "state.sqlite3"},
    )
    return settings.model_copy(update={"supermq": sim.settings(profile="auto", **overrides)})


async def _doctor(settings: Settings, environ: dict[str, str] | None = None) -> tuple[int, list[Check], str]:
    registry = build_registry(settings, get_logger("test"), SuperMQClient(settings.supermq))
    checks = await diagnose(settings, registry, None, environ or {})
    out = io.StringIO()
    code = print_checks(checks, out)
    return code, checks, out.getvalue()


def _failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]


async def test_healthy(tmp_path: Path, sim: Simulator, unique: str, redis_client: aioredis.Redis) -> None:
    settings = _settings(tmp_path, sim, unique)
    await redis_client.xgroup_create(settings.redis.streams[0], "g", id="0", mkstream=True)
    await redis_client.xadd(settings.redis.streams[0], {"operation": "config.create", "thing_id": "t"})
    code, checks, text = await _doctor(settings)
    assert _failed(checks) == [], text
    assert code == 0
    names = [c.name for c in checks]
    # in order: config, event store, platform, rules, trust, state
    assert [c.section for c in checks] == sorted(
        (c.section for c in checks),
        key=["config", "event store", "platform", "rules", "trust", "state"].index,
    )
    assert f"stream d{unique}.bootstrap" in names
    assert "group g: lag 1, pending 0" in text
    assert {"users service", "bootstrap service", "profile", "credentials log in", "token refreshes"} <= set(
        names
    )
    assert "[ok  ] profile: things: " in text  # detected from /health
    listens = next(c for c in checks if c.name == "operations nothing listens to")
    assert "config.create" not in listens.detail
    assert "config.remove" in listens.detail
    assert sim.state.secret not in text
    assert "check(s) passed" in text
    assert not (tmp_path / "state.sqlite3").exists()  # doctor creates nothing
    doc = io.StringIO()
    assert print_checks(checks, doc, as_json=True) == 0
    assert json.loads(doc.getvalue())["ok"] is True


async def test_redis_down(tmp_path: Path, sim: Simulator, unique: str) -> None:
    settings = _settings(tmp_path, sim, unique, redis_url=f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    code, checks, text = await _doctor(settings)
    assert code == 1
    failed = _failed(checks)
    assert [c.name for c in failed] == [
        "reachable"
    ]  # the rest still checked; streams not (they depend on it)
    assert failed[0].section == "event store"
    assert "start the event store, or point redis.url (REACTOR_REDIS__URL) at it" in text
    assert "hunter2" not in text
    assert "redis://:***@127.0.0.1" in text


async def test_group_missing(tmp_path: Path, sim: Simulator, unique: str) -> None:
    code, checks, text = await _doctor(_settings(tmp_path, sim, unique))
    assert code == 1
    assert [c.name for c in _failed(checks)] == [f"stream d{unique}.bootstrap"]
    assert "run `reactor run` once (it creates the group, at redis.start_id)" in text


async def test_wrong_credentials(
    tmp_path: Path, sim: Simulator, unique: str, redis_client: aioredis.Redis
) -> None:
    settings = _settings(tmp_path, sim, unique, secret="not-the-secret")
    await redis_client.xgroup_create(settings.redis.streams[0], "g", id="0", mkstream=True)
    code, checks, text = await _doctor(settings)
    assert code == 1
    assert [c.name for c in _failed(checks)] == ["credentials log in"]
    assert "refused with 500: invalid user id or secret" in text  # v0.14.0's answer, as is
    assert "fix: check supermq.identity and supermq.secret" in text
    assert "not-the-secret" not in text


async def test_platform_down(
    tmp_path: Path, sim: Simulator, unique: str, redis_client: aioredis.Redis
) -> None:
    settings = _settings(tmp_path, sim, unique, users_url=f"http://127.0.0.1:{free_port()}")
    await redis_client.xgroup_create(settings.redis.streams[0], "g", id="0", mkstream=True)
    code, checks, text = await _doctor(settings)
    assert code == 1
    assert [c.name for c in _failed(checks)] == ["users service"]  # no login tried without it
    assert "fix: start SuperMQ's users service, or set supermq.users_url" in text


async def test_bad_rule(tmp_path: Path, sim: Simulator, unique: str, redis_client: aioredis.Redis) -> None:
    settings = _settings(tmp_path, sim, unique)
    await redis_client.xgroup_create(settings.redis.streams[0], "g", id="0", mkstream=True)
    (settings.rules.dir / "bad.toml").write_text(
        '[[rule]]\nname = "x"\non = ["config.create"]\n[[rule.actions]]\ntype = "nope"\n'
    )
    code, checks, text = await _doctor(settings)
    assert code == 1
    (failed,) = _failed(checks)
    assert failed.section == "rules"
    assert "bad.toml" in failed.detail
    assert f"fix: fix each error at its file:line (reactor rules check {settings.rules.dir})" in text


async def test_empty_trust_dir(
    tmp_path: Path, sim: Simulator, unique: str, redis_client: aioredis.Redis
) -> None:
    settings = _settings(tmp_path, sim, unique)
    await redis_client.xgroup_create(settings.redis.streams[0], "g", id="0", mkstream=True)
    (settings.certs.trust_dir / "ca.pem").unlink()
    code, checks, text = await _doctor(settings)
    assert code == 1
    (failed,) = _failed(checks)
    assert failed.section == "trust"
    assert "0 anchor(s)" in failed.detail
    assert "for development: reactor certs dev-ca" in text


async def test_unknown_variable(
    tmp_path: Path, sim: Simulator, unique: str, redis_client: aioredis.Redis
) -> None:
    settings = _settings(tmp_path, sim, unique)
    await redis_client.xgroup_create(settings.redis.streams[0], "g", id="0", mkstream=True)
    code, checks, text = await _doctor(settings, {"REACTOR_REDIS_URL": "redis://x"})
    assert code == 1
    assert [c.name for c in _failed(checks)] == ["environment REACTOR_REDIS_URL"]
    assert "fix: rename it to REACTOR_REDIS__URL" in text


def _config_file(tmp_path: Path, settings: Settings) -> Path:
    s = settings.supermq
    text = f"""
[redis]
url = "{settings.redis.url}"
streams = {json.dumps(settings.redis.streams)}
group = "g"

[rules]
dir = "{settings.rules.dir}"

[certs]
trust_dir = "{settings.certs.trust_dir}"

[state]
backend = "sqlite"
path = "{settings.state.path}"

[supermq]
profile = "auto"
users_url = "{s.users_url}"
things_url = "{s.things_url}"
bootstrap_url = "{s.bootstrap_url}"
certs_url = "{s.certs_url}"
http_url = "{s.http_url}"
identity = "{s.identity}"
secret = "{s.secret.get_secret_value()}"
"""
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


async def test_the_command_end_to_end(
    tmp_path: Path,
    sim: Simulator,
    unique: str,
    redis_client: aioredis.Redis,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``reactor --config FILE doctor [--json]``: 0 when all pass, 1 on a finding, 2 when the
    settings do not load (reported as the failed check, with its fix)."""
    for name in [n for n in os.environ if n.startswith("REACTOR_")]:
        monkeypatch.delenv(name)
    settings = _settings(tmp_path, sim, unique)
    await redis_client.xgroup_create(settings.redis.streams[0], "g", id="0", mkstream=True)
    config = _config_file(tmp_path, settings)
    assert await asyncio.to_thread(main, ["--config", str(config), "doctor"]) == 0
    text = capsys.readouterr().out
    assert f"settings load: {config}" in text
    assert sim.state.secret not in text
    assert await asyncio.to_thread(main, ["--config", str(config), "doctor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    (settings.certs.trust_dir / "ca.pem").unlink()
    assert await asyncio.to_thread(main, ["--config", str(config), "doctor"]) == 1
    assert "fix: put the CA certificates" in capsys.readouterr().out
    config.write_text(config.read_text() + "\n[worker]\nbogus = 1\n")
    assert await asyncio.to_thread(main, ["--config", str(config), "doctor"]) == 2
    text = capsys.readouterr().out
    assert "[FAIL] settings load:" in text
    assert "worker.bogus: unknown key" in text
    assert f"fix: correct what is named above in {config}" in text


def _crl(corpus: Corpus, next_update: dt.datetime) -> bytes:
    root = corpus.root
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.cert.subject)
        .last_update(next_update - dt.timedelta(days=7))
        .next_update(next_update)
        .sign(root.key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM)


async def test_stale_crl(tmp_path: Path, sim: Simulator, unique: str, redis_client: aioredis.Redis) -> None:
    settings = _settings(tmp_path, sim, unique)
    await redis_client.xgroup_create(settings.redis.streams[0], "g", id="0", mkstream=True)
    corpus = Corpus()
    (settings.certs.trust_dir / "ca.pem").write_text(corpus.root.pem)
    now = dt.datetime.now(dt.UTC)
    (settings.certs.trust_dir / "crl.pem").write_bytes(_crl(corpus, now + dt.timedelta(days=1)))
    code, checks, text = await _doctor(settings)
    assert code == 0, text
    assert "[ok  ] CRL crl.pem: next update" in text
    (settings.certs.trust_dir / "crl.pem").write_bytes(_crl(corpus, now - dt.timedelta(hours=1)))
    code, checks, text = await _doctor(settings)
    assert code == 1
    (failed,) = _failed(checks)
    assert failed.name == "CRL crl.pem"
    assert f"fix: fetch a fresh CRL from its issuer into {settings.certs.trust_dir / 'crl.pem'}" in text


@pytest.fixture(params=["nats", "rabbitmq"])
async def backend(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[Backend]:
    chosen = BACKENDS[request.param](unique)
    await chosen.setup()
    yield chosen
    await chosen.teardown()


async def test_other_event_stores(backend: Backend, tmp_path: Path, sim: Simulator, unique: str) -> None:
    """NATS JetStream and RabbitMQ: the stream or queue the reactor reads is there; down, the fix
    names the setting."""
    settings = _settings(tmp_path, sim, unique).model_copy(
        update={"source": backend.name, backend.name: backend.settings}  # type: ignore[attr-defined]
    )
    source = backend.source()
    await source.start()  # the durable consumer / the queue, as the daemon makes them
    await source.close()
    _, checks, text = await _doctor(settings)
    store = [c for c in checks if c.section == "event store"]
    assert all(c.ok for c in store), text
    assert any(c.name.startswith("stream ") for c in store)
    port = free_port()
    url = f"nats://127.0.0.1:{port}" if backend.name == "nats" else f"amqp://guest:pw1x@127.0.0.1:{port}/"
    down = settings.model_copy(
        update={backend.name: backend.settings.model_copy(update={"url": url})}  # type: ignore[attr-defined]
    )
    _, checks, text = await _doctor(down)
    assert [c.name for c in _failed(checks)] == ["reachable"]
    url_setting = f"{backend.name}.url (REACTOR_{backend.name.upper()}__URL)"
    assert f"fix: start the event store, or point {url_setting} at it" in text
    assert "pw1x" not in text


async def test_redis_state_store_down(tmp_path: Path, sim: Simulator, unique: str) -> None:
    settings = _settings(tmp_path, sim, unique, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    settings = settings.model_copy(update={"state": settings.state.model_copy(update={"backend": "redis"})})
    code, checks, text = await _doctor(settings)
    assert code == 1
    assert [c.name for c in _failed(checks)] == ["reachable", "state store"]
    assert "state store: redis redis://127.0.0.1:" in text
    assert (
        "fix: start Redis, or point redis.url (REACTOR_REDIS__URL) at it: the redis state store lives there"
        in text
    )


async def test_detects_mainflux(tmp_path: Path, unique: str, redis_client: aioredis.Redis) -> None:
    async with Simulator(profile="mainflux", validate=False) as mainflux:
        settings = _settings(tmp_path, mainflux, unique)
        await redis_client.xgroup_create(settings.redis.streams[0], "g", id="0", mkstream=True)
        code, checks, text = await _doctor(settings)
    assert code == 0, text
    assert "[ok  ] profile: mainflux: " in text
    assert next(c for c in checks if c.name == "token refreshes").ok


async def test_detects_supermq_head(tmp_path: Path, unique: str, redis_client: aioredis.Redis) -> None:
    """HEAD: auto picks clients from /health, checks the clients and channels services (no things
    service there), logs in with username/password and refreshes."""
    async with Simulator(profile="clients", validate=False) as head:
        settings = _settings(tmp_path, head, unique)
        await redis_client.xgroup_create(settings.redis.streams[0], "g", id="0", mkstream=True)
        code, checks, text = await _doctor(settings)
    assert code == 0, text
    assert "[ok  ] profile: clients: " in text
    names = {c.name for c in checks}
    assert {"clients service", "channels service", "credentials log in", "token refreshes"} <= names
    assert "things service" not in names
