"""Issue #19, secrets S1-S10: every output and store scanned for every secret, transformed ones
included: the daemon log, the dead-letter stream (failed, malformed, poison records) and ``dlq
list``/``show``, the audit trail and ``reactor history``, ``reactor status``, the state store's
SQLite file, ``/metrics``, ``reactor rules test``. 0 found in clear; and ``dlq replay`` still
has the original of a malformed record (sealed, not masked)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from reactor.app import Reactor, build_audit, build_state_store
from reactor.delivery.executor import begin_trial
from reactor.delivery.outcome import Outcome
from reactor.ops.logging import configure_logging, get_logger
from reactor.settings import load_settings
from reactor.sources.base import Delivery
from reactor.sources.memory import MemorySource
from reactor.sources.redis_streams import RedisDeadLetters
from reactor.supermq.simulator import Simulator
from tests.conftest import REDIS_URL, REPO, reactor_cli

MASK = "***"
EXTERNAL_KEY = "ext-Key-8c1f2d9e-Secret"
TOKEN_SECRET = "tok-9f8e7d6c5b4a-Secret"
MQTT_KEY = "mqtt-5e0d3c2b-thing-Key"
SHORT = "k9x2"  # S6: shorter than six characters
URL_PASSWORD = "hunter2pass"
REDIS_PASSWORD = "redisPw77zz"

RULES = f"""
[[rule]]
name = "transforms"
on = ["config.create"]
[[rule.actions]]
type = "log"
message = "rev={{{{ event.external_key | reverse }}}} tail={{{{ event.external_key[1:] }}}} \
low={{{{ event.token | lower }}}} title={{{{ event.external_key | title }}}} \
join={{{{ event.external_key | list | join }}}} up={{{{ event.external_key.upper() }}}} \
pct={{{{ '%s' % event.token }}}} cat={{{{ event.token ~ '' }}}} fmt={{{{ '{{}}'.format(event.token) }}}} \
pk={{{{ event.client_key | replace('PRIVATE KEY', 'PK') }}}} short={{{{ event.pin_token }}}} \
json={{{{ event.fields | tojson }}}} all={{{{ event.fields }}}}"
fields = {{ plain = "{{{{ event.external_key }}}}", sliced = "{{{{ event.token[2:] }}}}" }}

[[rule]]
name = "issue-and-log"
on = ["config.create"]
[[rule.actions]]
id = "cert"
type = "certs.issue"
thing_id = "{{{{ event.thing_id }}}}"
[[rule.actions]]
type = "log"
message = "issued {{{{ results.cert.client_key | replace('PRIVATE KEY', 'PK') }}}} \
{{{{ results.cert.client_key[30:] }}}} {{{{ results.cert }}}}"
fields = {{ k = "{{{{ results.cert.client_key }}}}" }}

[[rule]]
name = "webhook"
on = ["config.create"]
retry = {{ attempts = 1 }}
[[rule.actions]]
type = "http.request"
url = "http://hook:{URL_PASSWORD}@127.0.0.1:1/{{{{ event.operation }}}}"  # refused per event
json_body = {{ key = "{{{{ event.external_key }}}}" }}

[[rule]]
name = "view-and-log"
on = ["thing.bootstrap"]
when = ["event.thing_id is defined"]
[[rule.actions]]
id = "view"
type = "bootstrap.view_config"
config_id = "{{{{ event.thing_id }}}}"
[[rule.actions]]
type = "log"
message = "tk={{{{ results.view.thing_key }}}} ek={{{{ results.view.external_key | lower }}}} \
all={{{{ results.view }}}}"

[[rule]]
name = "mqtt-log"
on = ["mqtt.*"]
[[rule.actions]]
type = "log"
message = "mqtt {{{{ event.thing_key }}}} {{{{ event.thing_key | reverse }}}}"
"""


def _pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _jwt() -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    claims = base64.urlsafe_b64encode(b'{"sub":"admin","exp":4102444800}').decode().rstrip("=")
    return f"{header}.{claims}.c2lnbmF0dXJlLXNlY3JldC12YWx1ZQ"


def _forms(name: str, secret: str) -> dict[str, str]:
    """A secret and what templates can make of it (S5)."""
    forms = {
        name: secret,
        f"{name} reversed": secret[::-1],
        f"{name}[1:]": secret[1:],
        f"{name} lower": secret.lower(),
        f"{name} upper": secret.upper(),
        f"{name} title": secret.title(),
    }
    return {k: v for k, v in forms.items() if len(v) >= 6}


def _scan(outputs: dict[str, str], secrets: dict[str, str]) -> list[str]:
    return [
        f"{what} in clear in the {where}"
        for where, text in outputs.items()
        for what, secret in secrets.items()
        if secret in text
    ]


def _cli(*args: str, env: dict[str, str]) -> str:
    result = reactor_cli(*args, env=env)
    assert result.returncode in (0, 1), result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_no_secret_in_clear_in_any_output_or_store(
    tmp_path: Path, redis_client: aioredis.Redis, unique: str, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    pem, jwt = _pem(), _jwt()
    pem_body = "".join(pem.splitlines()[1:-1])
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(RULES)
    shutil.copy(REPO / "rules" / "onboarding.toml", rules / "onboarding.toml")  # push-config-on-bootstrap
    state_path = tmp_path / "state" / "reactor.sqlite3"
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("REACTOR_SECRETS__KEY", key)  # what seals kept secrets (ignored before #19)
    log = io.StringIO()
    configure_logging("DEBUG", "json", log)
    async with Simulator(validate=False) as sim:
        thing = sim.state.add_thing("gw", key="thing-Key-4f1e9d-Secret")
        ctrl = sim.state.add_channel("ctrl", metadata={"type": "control"})
        sim.state.add_config(thing, "ext-1", EXTERNAL_KEY, [ctrl.id], "{}", "gw")
        sim.state.connect(thing.id, ctrl.id)
        settings = load_settings(
            None,
            source="memory",
            rules={"dir": rules, "reload_interval_s": 0},
        )
        settings = settings.model_copy(update={"supermq": sim.settings(http_allowlist=["127.0.0.1"])})
        config_create = {
            "operation": "config.create",
            "thing_id": thing.id,
            "external_id": "ext-1",
            "client_key": pem,
            "external_key": EXTERNAL_KEY,
            "token": TOKEN_SECRET,
            "pin_token": SHORT,
        }
        bootstrap = {
            "operation": "thing.bootstrap",
            "thing_id": thing.id,
            "external_id": "ext-1",
            "success": "1",
            "channels": f"[{ctrl.id}]",
            "occurred_at": str(time.time_ns()),
        }
        broken = (
            f'{{"operation":"config.create","external_key":"{EXTERNAL_KEY}","token":"{TOKEN_SECRET}", oops'
        )
        source = MemorySource(
            [
                ("supermq.bootstrap", config_create),
                ("supermq.bootstrap", bootstrap),
                ("supermq.bootstrap", {"data": broken}),  # S1: malformed, data not JSON
                ("supermq.mqtt", {"thing_id": MQTT_KEY, "event_type": ""}),  # S2: malformed MQTT
                ("supermq.mqtt", {"thing_id": MQTT_KEY, "event_type": "connect", "instance": ""}),
                ("supermq.things", {"operation": jwt, "id": "t1"}),  # S10: a JWT as an operation
                ("supermq.things", {"operation": pem.replace("\n", ""), "id": "t2"}),
            ]
        )
        # Poison: delivered too often, ran alone once and the process died then (the mark below);
        # never decoded again; its raw content holds the MQTT key.
        poison = Delivery(
            "supermq.mqtt", "9-0", {"thing_id": MQTT_KEY, "event_type": "connect"}, deliveries=99
        )
        source.add_delivery(poison)
        stored = {"backend": backend, "path": state_path}
        group = f"g{unique}"
        on_disk = load_settings(None, source="redis", state=stored, redis={"url": REDIS_URL, "group": group})
        state = build_state_store(on_disk)
        await begin_trial(state, poison.key)
        audit = build_audit(on_disk)
        outcomes: list[Outcome] = []
        reactor = Reactor.build(
            settings, source, get_logger("test"), observers=[outcomes.append], state=state
        )
        reactor.audit = audit
        reactor.worker.settler._sinks = [audit.record]
        await asyncio.wait_for(reactor.run(asyncio.Event()), 30)
        access_tokens = set(sim.state.access_tokens)
        issued_keys = [c.key_pem for c in sim.state.certs.values()]
        await state.close()
        await audit.close()

    reasons = sorted(d.reason for d in source.dead_letters)
    assert reasons.count("malformed") == 2, reasons
    assert "poison" in reasons, reasons
    assert "action_failed" in reasons, reasons
    dlq = f"t{unique}.dlq"
    for record in source.dead_letters:  # as the Redis source writes them
        await redis_client.xadd(dlq, record.to_fields())  # type: ignore[arg-type]
    env = {
        "REACTOR_REDIS__URL": REDIS_URL,
        "REACTOR_REDIS__DLQ_STREAM": dlq,
        "REACTOR_REDIS__STREAMS": f'["t{unique}.bootstrap"]',
        "REACTOR_STATE__PATH": str(state_path),
        "REACTOR_STATE__BACKEND": backend,
        "REACTOR_REDIS__GROUP": group,
        "REACTOR_RULES__DIR": str(rules),
        "REACTOR_SECRETS__KEY": key,
    }
    ids = [r.id for r in await RedisDeadLetters(redis_client, dlq).records()]
    create_file, mqtt_file = tmp_path / "create.json", tmp_path / "mqtt.json"
    create_file.write_text(json.dumps(config_create))
    mqtt_file.write_text(json.dumps({"thing_id": MQTT_KEY, "event_type": "connect", "instance": ""}))
    outputs = {
        "daemon log": log.getvalue(),
        "dead-letter stream": json.dumps([d.to_fields() for d in source.dead_letters]),
        "dlq list": _cli("dlq", "list", env=env),
        "dlq show": "".join(_cli("dlq", "show", i, env=env) for i in ids),
        "status": _cli("status", env=env),
        "history": _cli("history", "--thing", thing.id, env=env)
        + _cli("history", "--rule", "webhook", env=env),
        "state store": _sqlite_text(state_path)
        if backend == "sqlite"
        else await _redis_text(redis_client, group),
        "/metrics": reactor.metrics.render().decode(),
        "rules test": _cli("rules", "test", "--event", str(create_file), env=env)
        + _cli("rules", "test", "--event", str(mqtt_file), "--stream", "supermq.mqtt", env=env),
    }
    assert "issue-and-log" in outputs["history"] or "webhook" in outputs["history"]
    assert "MATCH transforms" in outputs["rules test"]
    secrets = {
        **_forms("external key", EXTERNAL_KEY),
        **_forms("token", TOKEN_SECRET),
        **_forms("MQTT thing key", MQTT_KEY),
        **_forms("thing key", "thing-Key-4f1e9d-Secret"),
        "PEM line": pem.splitlines()[1],
        "PEM line reversed": pem.splitlines()[1][::-1],
        "PEM body": pem_body[20:80],
        "JWT": jwt,
        "JWT signature": jwt.rsplit(".", 1)[1],
        "URL password": URL_PASSWORD,
        **{f"issued key {i}": k.splitlines()[1] for i, k in enumerate(issued_keys)},
        **{f"SuperMQ token {i}": t for i, t in enumerate(access_tokens)},
    }
    assert not _scan(outputs, secrets)
    assert f"short={MASK}" in outputs["daemon log"]  # S6: masked, not dropped
    shown = f"tail={MASK} low={MASK} title={MASK} join={MASK} up={MASK} pct={MASK} cat={MASK} fmt={MASK}"
    assert f"{shown} pk={MASK} short={MASK}" in outputs["daemon log"]  # masked, not dropped (S5, S6)
    assert f"tk={MASK} ek={MASK}" in outputs["daemon log"]  # S4
    assert f"issued {MASK} {MASK}" in outputs["daemon log"]  # S5: certs.issue's key


async def _redis_text(client: aioredis.Redis, group: str) -> str:
    """Every key of the group's state store and audit trail, as Redis holds them."""
    texts = []
    async for key in client.scan_iter(f"reactor:{group}:*"):
        kind = await client.type(key)
        if kind == "hash":
            texts.append(json.dumps(await client.hgetall(key)))
        elif kind == "stream":
            texts.append(json.dumps(await client.xrange(key)))
        await client.delete(key)  # read once: the test's database keeps nothing
    assert texts, f"nothing stored under reactor:{group}:"
    return "\n".join(texts)


def _sqlite_text(path: Path) -> str:
    """Every row of every table, and the file's bytes (WAL included) as text."""
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = [json.dumps(r, default=str) for t in tables for r in db.execute(f"SELECT * FROM {t}")]
    finally:
        db.close()
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir() if p.is_file())
    return "\n".join(rows) + raw.decode("latin-1")
