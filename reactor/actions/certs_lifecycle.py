"""``certs.validate`` and ``certs.rotate``: the guard of device identity.

Rotation never leaves a device without a valid certificate: issue a new one, validate it, push
it to the bootstrap config, confirm the config now serves it, and only then retire the old one.
Magistrala v0.14's certs API revokes *every* certificate of a thing (``DELETE /certs/{thingID}``),
which would take the new one too: on that API the old certificate is left to expire and the
result says so (``old_revoked: false`` with the reason). With the local CA (``certs.issuer =
"local"``) the old serial is added to the CA's signed CRL, which validation reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactor.actions.base import Action, ActionContext, Params
from reactor.certs.ca import LocalCA
from reactor.certs.validate import Policy, Verdict, validate
from reactor.durations import parse_go_duration
from reactor.errors import ActionError, PermanentError, RetryableError
from reactor.ops.metrics import Metrics
from reactor.settings import CertsSettings
from reactor.supermq import models
from reactor.supermq.client import SuperMQClient


class ValidateParams(Params):
    cert: str
    key: str = ""
    ca: str = ""
    identity: str = ""
    fail_on: list[str] = ["invalid"]


class ValidateCert(Action):
    """Validate a certificate; the verdict is the result. Fails (permanently) on a verdict in ``fail_on``."""

    type_name = "certs.validate"
    params_model = ValidateParams
    secret_params = frozenset({"key", "identity"})
    has_effect = False

    def __init__(self, policy: Policy, metrics: Metrics | None) -> None:
        self._policy = policy
        self._metrics = metrics

    async def run(self, params: ValidateParams, ctx: ActionContext) -> dict[str, Any]:
        verdict = validate(
            params.cert, self._policy, key_pem=params.key, ca_pem=params.ca, identity=params.identity
        )
        record(self._metrics, verdict)
        if verdict.verdict in params.fail_on:
            raise PermanentError(f"certificate {verdict.verdict}: {'; '.join(verdict.reasons)}")
        return verdict.as_dict()


def record(metrics: Metrics | None, verdict: Verdict) -> None:
    if metrics is None:
        return
    metrics.cert_verdicts.labels(verdict.verdict).inc()
    if verdict.days_left is not None:
        metrics.cert_days.observe(max(verdict.days_left, 0))


class RotateParams(Params):
    config_id: str
    ttl: str | None = None
    force: bool = False


@dataclass
class Issued:
    cert: str
    key: str
    serial: str
    ca: str


class RotateCert(Action):
    """Rotate a device's certificate when it is due, invalid, missing, or when forced."""

    type_name = "certs.rotate"
    params_model = RotateParams
    repeatable = False  # a repeat issues another certificate, and the first stays valid

    def __init__(
        self,
        client: SuperMQClient,
        policy: Policy,
        settings: CertsSettings,
        default_ttl: str,
        metrics: Metrics | None,
    ) -> None:
        self._client = client
        self._policy = policy
        self._settings = settings
        self._ttl = default_ttl
        self._metrics = metrics

    async def run(self, params: RotateParams, ctx: ActionContext) -> dict[str, Any]:
        config = await self._client.served_config(params.config_id)
        identity = device_identity(self._settings.bind, config)
        current = (
            validate(config.client_cert, self._policy, ca_pem=config.ca_cert, identity=identity)
            if config.client_cert
            else None
        )
        if current is not None:
            record(self._metrics, current)
        if current is not None and current.verdict == "ok" and not params.force:
            return {"config_id": params.config_id, "rotated": False, "verdict": current.as_dict()}
        issued = await self._issue(config.thing_id, config.thing_key, params.ttl or self._ttl)
        fresh = validate(issued.cert, self._policy, key_pem=issued.key, ca_pem=issued.ca, identity=identity)
        record(self._metrics, fresh)
        if fresh.verdict != "ok":
            raise PermanentError(
                f"the new certificate is {fresh.verdict}: {'; '.join(fresh.reasons)}; "
                "the device keeps its current one"
            )
        await self._client.update_certs(
            params.config_id,
            client_cert=issued.cert,
            client_key=issued.key,
            ca_cert=issued.ca or config.ca_cert,
        )
        served = await self._client.served_config(params.config_id)
        if served.client_cert.strip() != issued.cert.strip():
            raise RetryableError(f"config {params.config_id} does not serve the new certificate yet")
        result: dict[str, Any] = {
            "config_id": params.config_id,
            "rotated": True,
            "serial": issued.serial,
            "previous": current.as_dict() if current else None,
            "not_after": fresh.not_after,
        }
        return result | await self._retire(current)

    async def _retire(self, current: Verdict | None) -> dict[str, Any]:
        """Revoke the old certificate, now that the config serves the new one (where the issuer can:
        the local CA, and SuperMQ HEAD's certs service, which revokes by serial)."""
        if current is None or not current.serial:
            return {"old_revoked": False, "old_revoke_note": "there was no old certificate"}
        if self._settings.issuer == "local":
            directory = Path(self._settings.local_ca_dir)
            LocalCA.load(directory).revoke(directory, current.serial)
            return {"old_revoked": True, "old_serial": current.serial}
        if self._client.profile.revokes_by_serial:
            try:
                await self._client.revoke_cert(current.serial)
            except ActionError as exc:  # the rotation is done: a retry would not revoke it either
                return {"old_revoked": False, "old_serial": current.serial, "old_revoke_note": str(exc)}
            return {"old_revoked": True, "old_serial": current.serial}
        return {
            "old_revoked": False,
            "old_serial": current.serial,
            "old_revoke_note": "left to expire: this certs API revokes every certificate of the thing",
        }

    async def _issue(self, thing_id: str, thing_key: str, ttl: str) -> Issued:
        if self._settings.issuer == "local":
            ca = LocalCA.load(Path(self._settings.local_ca_dir))
            cert, key, serial, _ = ca.issue(thing_key, thing_id, parse_go_duration(ttl))
            return Issued(cert, key, serial, ca.pem)
        cert_ = await self._client.issue_cert(thing_id, ttl, common_name=thing_key)
        return Issued(cert_.client_cert, cert_.client_key, cert_.cert_serial, "")


def device_identity(bind: str, config: models.Config) -> str:
    """What the certificate's identity must equal for this config under ``certs.bind``."""
    values = {"thing_key": config.thing_key, "thing_id": config.thing_id, "external_id": config.external_id}
    return values.get(bind, "")
