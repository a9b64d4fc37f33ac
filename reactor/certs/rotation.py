"""Certificate rotation, in one place: the ``certs.rotate`` action and the sweep both call ``rotate``.

Rotation never leaves a device without a valid certificate: issue a new one, validate it, push
it to the bootstrap config, confirm the config now serves it, and only then retire the old one.
Magistrala v0.14's certs API revokes *every* certificate of a thing (``DELETE /certs/{thingID}``),
which would take the new one too: on that API the old certificate is left to expire and the
result says so (``old_revoked: false`` with the reason). SuperMQ HEAD's (profile ``clients``)
revokes by serial: exactly the old certificate is revoked. With the local CA (``certs.issuer =
"local"``) the old serial is added to the CA's signed CRL, which validation reads.

Every verdict reached on the way is reported through ``on_verdict`` (the daemon counts them in its
metrics); this module knows nothing of who listens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactor.certs.ca import LocalCA
from reactor.certs.validate import Policy, Verdict, validate
from reactor.durations import parse_go_duration
from reactor.errors import ActionError, PermanentError, RetryableError
from reactor.settings import CertsSettings
from reactor.supermq import models
from reactor.supermq.client import SuperMQClient

#: Where a certificate check reports its verdict (the daemon's metrics; nothing when ``None``).
VerdictSink = Callable[[Verdict], None]


@dataclass(frozen=True, slots=True)
class Rotator:
    """What a rotation needs: the platform, the policy certificates are held to, and the issuer."""

    client: SuperMQClient
    policy: Policy
    settings: CertsSettings
    default_ttl: str
    on_verdict: VerdictSink | None = None

    def report(self, verdict: Verdict) -> Verdict:
        if self.on_verdict is not None:
            self.on_verdict(verdict)
        return verdict


@dataclass(frozen=True, slots=True)
class Issued:
    cert: str
    key: str
    serial: str
    ca: str


async def rotate(
    rotator: Rotator, config_id: str, *, ttl: str | None = None, force: bool = False
) -> dict[str, Any]:
    """Rotate a config's certificate when it is due, invalid, missing, or when ``force``d.

    Raises ``PermanentError`` when the new certificate does not validate (the device keeps its
    current one) and ``RetryableError`` when the config does not serve the new one yet."""
    client = rotator.client
    config = await client.served_config(config_id)
    identity = device_identity(rotator.settings.bind, config)
    current = (
        rotator.report(validate(config.client_cert, rotator.policy, ca_pem=config.ca_cert, identity=identity))
        if config.client_cert
        else None
    )
    if current is not None and current.verdict == "ok" and not force:
        return {"config_id": config_id, "rotated": False, "verdict": current.as_dict()}
    issued = await _issue(rotator, config.thing_id, config.thing_key, ttl or rotator.default_ttl)
    fresh = rotator.report(
        validate(issued.cert, rotator.policy, key_pem=issued.key, ca_pem=issued.ca, identity=identity)
    )
    if fresh.verdict != "ok":
        raise PermanentError(
            f"the new certificate is {fresh.verdict}: {'; '.join(fresh.reasons)}; "
            "the device keeps its current one"
        )
    await client.update_certs(
        config_id, client_cert=issued.cert, client_key=issued.key, ca_cert=issued.ca or config.ca_cert
    )
    served = await client.served_config(config_id)
    if served.client_cert.strip() != issued.cert.strip():
        raise RetryableError(f"config {config_id} does not serve the new certificate yet")
    result: dict[str, Any] = {
        "config_id": config_id,
        "rotated": True,
        "serial": issued.serial,
        "previous": current.as_dict() if current else None,
        "not_after": fresh.not_after,
    }
    return result | await _retire(rotator, current)


async def _retire(rotator: Rotator, current: Verdict | None) -> dict[str, Any]:
    """Revoke the old certificate, now that the config serves the new one (where the issuer can:
    the local CA, and SuperMQ HEAD's certs service, which revokes by serial)."""
    settings = rotator.settings
    if current is None or not current.serial:
        return {"old_revoked": False, "old_revoke_note": "there was no old certificate"}
    if settings.issuer == "local":
        directory = Path(settings.local_ca_dir)
        LocalCA.load(directory).revoke(directory, current.serial)
        return {"old_revoked": True, "old_serial": current.serial}
    if rotator.client.profile.revokes_by_serial:
        try:
            await rotator.client.revoke_cert(current.serial)
        except ActionError as exc:  # the rotation is done: a retry would not revoke it either
            return {"old_revoked": False, "old_serial": current.serial, "old_revoke_note": str(exc)}
        return {"old_revoked": True, "old_serial": current.serial}
    return {
        "old_revoked": False,
        "old_serial": current.serial,
        "old_revoke_note": "left to expire: this certs API revokes every certificate of the thing",
    }


async def _issue(rotator: Rotator, thing_id: str, thing_key: str, ttl: str) -> Issued:
    if rotator.settings.issuer == "local":
        ca = LocalCA.load(Path(rotator.settings.local_ca_dir))
        cert, key, serial, _ = ca.issue(thing_key, thing_id, parse_go_duration(ttl))
        return Issued(cert, key, serial, ca.pem)
    cert_ = await rotator.client.issue_cert(thing_id, ttl, common_name=thing_key)
    return Issued(cert_.client_cert, cert_.client_key, cert_.cert_serial, "")


def device_identity(bind: str, config: models.Config) -> str:
    """What the certificate's identity must equal for this config under ``certs.bind``."""
    values = {"thing_key": config.thing_key, "thing_id": config.thing_id, "external_id": config.external_id}
    return values.get(bind, "")
