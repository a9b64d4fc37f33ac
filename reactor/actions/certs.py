"""Certificate actions on SuperMQ's certs service: issue and revoke."""

from __future__ import annotations

from typing import Any

from reactor.actions.base import Action, ActionContext, Params
from reactor.supermq.client import SuperMQClient


class IssueParams(Params):
    thing_id: str
    ttl: str | None = None


class Issue(Action):
    """Issue a client certificate for a thing; the result carries it (and its key) for the next actions."""

    type_name = "certs.issue"
    params_model = IssueParams
    repeatable = False  # each POST issues another certificate, valid until it expires

    def __init__(self, client: SuperMQClient, default_ttl: str) -> None:
        self._client = client
        self._ttl = default_ttl

    async def run(self, params: IssueParams, ctx: ActionContext) -> dict[str, Any]:
        cert = await self._client.issue_cert(params.thing_id, params.ttl or self._ttl)
        return {
            "thing_id": cert.thing_id,
            "client_cert": cert.client_cert,
            "client_key": cert.client_key,
            "serial": cert.cert_serial,
            "expiration": cert.expiration,
        }


class RevokeParams(Params):
    thing_id: str


class Revoke(Action):
    """Revoke a thing's certificates (SuperMQ's certs service revokes every certificate of the thing)."""

    type_name = "certs.revoke"
    params_model = RevokeParams

    def __init__(self, client: SuperMQClient) -> None:
        self._client = client

    async def run(self, params: RevokeParams, ctx: ActionContext) -> dict[str, Any]:
        revocation = await self._client.revoke_certs(params.thing_id)
        return {"thing_id": params.thing_id, "revocation_time": revocation.revocation_time}


def certs_actions(client: SuperMQClient, default_ttl: str) -> list[Action]:
    return [Issue(client, default_ttl), Revoke(client)]
