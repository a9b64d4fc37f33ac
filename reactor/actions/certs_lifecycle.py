"""``certs.validate`` and ``certs.rotate``: the guard of device identity, as rule actions.

The rotation itself (issue, validate, push, confirm, retire) is ``reactor.certs.rotation.rotate``,
which the certificate sweep calls too. Verdicts are reported through a callback (``on_verdict``,
the daemon's metrics), so actions import nothing of the daemon's.
"""

from __future__ import annotations

from typing import Any

from reactor.actions.base import Action, ActionContext, Params
from reactor.certs.rotation import Rotator, VerdictSink, rotate
from reactor.certs.validate import Policy, validate
from reactor.errors import PermanentError
from reactor.settings import CertsSettings
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

    def __init__(self, policy: Policy, on_verdict: VerdictSink | None) -> None:
        self._policy = policy
        self._on_verdict = on_verdict

    async def run(self, params: ValidateParams, ctx: ActionContext) -> dict[str, Any]:
        verdict = validate(
            params.cert, self._policy, key_pem=params.key, ca_pem=params.ca, identity=params.identity
        )
        if self._on_verdict is not None:
            self._on_verdict(verdict)
        if verdict.verdict in params.fail_on:
            raise PermanentError(f"certificate {verdict.verdict}: {'; '.join(verdict.reasons)}")
        return verdict.as_dict()


class RotateParams(Params):
    config_id: str
    ttl: str | None = None
    force: bool = False


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
        on_verdict: VerdictSink | None,
    ) -> None:
        self.rotator = Rotator(client, policy, settings, default_ttl, on_verdict)

    async def run(self, params: RotateParams, ctx: ActionContext) -> dict[str, Any]:
        return await rotate(self.rotator, params.config_id, ttl=params.ttl, force=params.force)
