"""Bootstrap config actions: push configuration, connections, state and certificates to a config."""

from __future__ import annotations

import json
from typing import Any, Literal

from reactor.actions.base import Action, ActionContext, Params
from reactor.errors import PermanentError
from reactor.supermq.client import SuperMQClient


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: tables merge recursively, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class _ConfigAction(Action):
    def __init__(self, client: SuperMQClient) -> None:
        self._client = client


class UpdateContentParams(Params):
    config_id: str
    patch: dict[str, Any]
    name: str | None = None


class UpdateContent(_ConfigAction):
    """Merge a JSON patch into the config's ``content`` (device configuration) and store it."""

    type_name = "bootstrap.update_content"
    params_model = UpdateContentParams

    async def run(self, params: UpdateContentParams, ctx: ActionContext) -> dict[str, Any]:
        config = await self._client.view_config(params.config_id)
        try:
            current = json.loads(config.content) if config.content.strip() else {}
        except ValueError as exc:
            raise PermanentError(
                f"config {params.config_id} content is not JSON; cannot merge a patch"
            ) from exc
        merged = merge_patch(current, params.patch)
        name = params.name or config.name
        if merged == current and name == config.name:
            # Already applied (a redelivery after a crash between the PUT and its record): no second write.
            return {"config_id": params.config_id, "content": merged, "unchanged": True}
        content = json.dumps(merged, separators=(",", ":"), sort_keys=True)
        await self._client.update_config(params.config_id, name=name, content=content)
        return {"config_id": params.config_id, "content": merged}


class UpdateConnectionsParams(Params):
    config_id: str
    channels: list[str]


class UpdateConnections(_ConfigAction):
    """Replace the list of channels a config (and, when active, its thing) is connected to."""

    type_name = "bootstrap.update_connections"
    params_model = UpdateConnectionsParams

    async def run(self, params: UpdateConnectionsParams, ctx: ActionContext) -> dict[str, Any]:
        await self._client.update_connections(params.config_id, params.channels)
        return {"config_id": params.config_id, "channels": params.channels}


class ChangeStateParams(Params):
    config_id: str
    state: Literal[0, 1]


class ChangeState(_ConfigAction):
    """Activate (1: connect the thing to the config's channels) or deactivate (0) a config."""

    type_name = "bootstrap.change_state"
    params_model = ChangeStateParams

    async def run(self, params: ChangeStateParams, ctx: ActionContext) -> dict[str, Any]:
        if ctx.redelivered and (await self._client.view_config(params.config_id)).state == params.state:
            return {"config_id": params.config_id, "state": params.state, "unchanged": True}
        await self._client.change_state(params.config_id, params.state)
        return {"config_id": params.config_id, "state": params.state}


class UpdateCertsParams(Params):
    config_id: str
    client_cert: str
    client_key: str = ""
    ca_cert: str = ""


class UpdateCerts(_ConfigAction):
    """Store a client certificate (and key, CA) in the config the device bootstraps from."""

    type_name = "bootstrap.update_certs"
    params_model = UpdateCertsParams
    secret_params = frozenset({"client_key"})

    async def run(self, params: UpdateCertsParams, ctx: ActionContext) -> dict[str, Any]:
        stored = await self._client.update_certs(
            params.config_id,
            client_cert=params.client_cert,
            client_key=params.client_key,
            ca_cert=params.ca_cert,
        )
        return {"config_id": stored.thing_id, "client_cert": stored.client_cert}


class ConfigIdParams(Params):
    config_id: str


class ViewConfig(_ConfigAction):
    """Read a config (its thing key, channels, content) for the actions after it."""

    type_name = "bootstrap.view_config"
    params_model = ConfigIdParams
    #: A read: run again on a redelivery (fresher, and its thing and external keys are never
    #: written to the state store).
    has_effect = False

    async def run(self, params: ConfigIdParams, ctx: ActionContext) -> dict[str, Any]:
        config = await self._client.view_config(params.config_id)
        return config.model_dump() | {
            "channel_ids": config.channel_ids,
            "control_channel_id": config.control_channel_id,
        }


class DropChannelParams(Params):
    channel_id: str


class DropChannel(_ConfigAction):
    """Remove a (deleted) channel from every config that still lists it, and disconnect its thing."""

    type_name = "bootstrap.drop_channel"
    params_model = DropChannelParams
    page = 100

    async def _disconnect(self, thing_id: str, channel_id: str) -> None:
        try:
            await self._client.connect(thing_id, [channel_id], connect=False)
        except PermanentError as exc:
            # The channel is usually gone already: nothing left to disconnect. Magistrala v0.14.0
            # answers a deleted channel with 403 (authorization fails before the lookup).
            if exc.status not in (403, 404):
                raise

    async def run(self, params: DropChannelParams, ctx: ActionContext) -> dict[str, Any]:
        updated: list[str] = []
        offset = 0
        while True:
            listing = await self._client.list_configs(offset=offset, limit=self.page)
            for summary in listing.configs:  # a listing carries no channels: view each config
                config = await self._client.view_config(summary.thing_id)
                if params.channel_id in config.channel_ids:
                    remaining = [c for c in config.channel_ids if c != params.channel_id]
                    await self._client.update_connections(config.thing_id, remaining)
                    await self._disconnect(config.thing_id, params.channel_id)
                    updated.append(config.thing_id)
            offset += len(listing.configs)
            if not listing.configs or offset >= listing.total:
                return {"channel_id": params.channel_id, "updated": updated}


def bootstrap_actions(client: SuperMQClient) -> list[Action]:
    return [
        UpdateContent(client),
        UpdateConnections(client),
        ChangeState(client),
        UpdateCerts(client),
        ViewConfig(client),
        DropChannel(client),
    ]
