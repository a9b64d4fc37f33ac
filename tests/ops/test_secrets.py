"""No secret in clear anywhere: a full run over events carrying private keys, tokens and thing
keys; every log line, dead-letter entry, audit row and metric label is scanned."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from reactor.app import Reactor
from reactor.ops.audit import MemoryAudit
from reactor.ops.logging import configure_logging, get_logger
from reactor.settings import load_settings
from reactor.sources.memory import MemorySource
from reactor.supermq.simulator import Simulator

RULES = """
[[rule]]
name = "careless-logging"
on = ["config.create", "mqtt.*", "user.issue_token"]
[[rule.actions]]
type = "log"
message = "key={{ event.client_key | default('') }} ext={{ event.external_key | default('') }} \
tok={{ event.token | default('') }}"
fields = { client_key = "{{ event.client_key | default('') }}", raw = "{{ event.fields }}" }

[[rule]]
name = "push-certs"
on = ["config.create"]
[[rule.actions]]
type = "bootstrap.update_certs"
config_id = "{{ event.thing_id }}"
client_cert = "cert"
client_key = "{{ event.client_key }}"
[[rule.actions]]
type = "message.publish"
channel_id = "no-such-channel"
thing_key = "{{ event.external_key }}"
payload = { key = "{{ event.client_key }}" }
"""


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


async def test_no_secret_reaches_logs_dead_letters_audit_or_metrics(tmp_path: Path) -> None:
    rsa_pem = _pem(
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        serialization.PrivateFormat.TraditionalOpenSSL,
    )
    ec_pem = _pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)
    one_line = ec_pem.replace("\n", "")  # as the event catalogue shows PEM bodies
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    claims = base64.urlsafe_b64encode(b'{"sub":"admin@example.com","exp":4102444800}').decode().rstrip("=")
    token = f"{header}.{claims}.c2lnbmF0dXJlLXNlY3JldC12YWx1ZQ"
    external_key, thing_key = "ext-key-8c1f2d9e-secret", "f3b1f2d6-0000-4000-8000-0000thingkey"

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(RULES)
    log = io.StringIO()
    configure_logging("DEBUG", "json", log)
    async with Simulator(validate=False) as sim:
        thing = sim.state.add_thing("dev")
        sim.state.add_config(thing, "ext", external_key, [], "{}")
        settings = load_settings(None, source="memory", rules={"dir": rules, "reload_interval_s": 0})
        settings = settings.model_copy(update={"supermq": sim.settings()})
        source = MemorySource(
            [
                (
                    "supermq.bootstrap",
                    {
                        "operation": "config.create",
                        "thing_id": thing.id,
                        "client_key": rsa_pem,
                        "external_key": external_key,
                        "external_id": "ext",
                    },
                ),
                (
                    "supermq.bootstrap",
                    {
                        "data": json.dumps(
                            {
                                "operation": "config.create",
                                "thing_id": thing.id,
                                "client_key": one_line,
                                "external_key": external_key,
                            }
                        )
                    },
                ),
                ("supermq.mqtt", {"thing_id": thing_key, "event_type": "connect", "instance": ""}),
                ("supermq.users", {"operation": "user.issue_token", "identity": "admin", "token": token}),
            ]
        )
        audit = MemoryAudit()
        reactor = Reactor.build(settings, source, get_logger("test"))
        reactor.audit = audit
        reactor.worker.settler._sinks = [audit.record]
        await reactor.run(asyncio.Event())
        access_tokens = set(sim.state.access_tokens)

    outputs = {
        "logs": log.getvalue(),
        "dead letters": "\n".join(json.dumps(d.to_fields()) for d in source.dead_letters),
        "audit": "\n".join(json.dumps(dataclasses.asdict(r)) for r in audit.rows),
        "metrics": reactor.metrics.render().decode(),
    }
    assert len(source.dead_letters) == 2  # the publish to a missing channel failed: params and event recorded
    assert audit.rows
    secrets = {
        "RSA key body": rsa_pem.splitlines()[5],
        "EC key body": ec_pem.splitlines()[1],
        "one-line key": one_line[40:120],
        "external key": external_key,
        "thing key": thing_key,
        "token": token,
        "token signature": token.rsplit(".", 1)[1],
        **{f"SuperMQ token {i}": t for i, t in enumerate(access_tokens)},
    }
    for where, text in outputs.items():
        for what, secret in secrets.items():
            assert secret not in text, f"{what} in clear in the {where}"
    assert '"message": "key=*** ext=*** tok="' in outputs["logs"]  # masked, not dropped
    assert '"client_key": "***"' in outputs["logs"]
    assert '\\"thing_key\\": \\"***\\"' in outputs["audit"]
