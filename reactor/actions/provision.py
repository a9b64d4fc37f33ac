"""Provisioning actions: create things and channels (ensured by name), create a bootstrap config,
and ``provision``, which applies an enrolled device's template (``reactor.provision.engine``).

Each looks up what exists before it creates, so a redelivery never creates a second one.
"""

from __future__ import annotations

import json
from typing import Any

from reactor.actions.base import Action, ActionContext, Params
from reactor.provision.engine import Provisioner
from reactor.provision.enrollments import mask
from reactor.supermq.client import SuperMQClient


class CreateParams(Params):
    name: str
    metadata: dict[str, Any] = {}


class CreateThing(Action):
    """Ensure a thing of this name exists (an enabled one is reused); its id for the next actions."""

    type_name = "things.create"
    params_model = CreateParams

    def __init__(self, client: SuperMQClient) -> None:
        self._client = client

    async def run(self, params: CreateParams, ctx: ActionContext) -> dict[str, Any]:
        found = await self._client.find_things(params.name)
        if found:
            return {"thing_id": found[0].id, "name": params.name, "created": False}
        thing = await self._client.create_thing(params.name, params.metadata)
        return {"thing_id": thing.id, "name": thing.name, "created": True}


class CreateChannel(Action):
    """Ensure a channel of this name exists (reused by exact name); its id for the next actions."""

    type_name = "channels.create"
    params_model = CreateParams

    def __init__(self, client: SuperMQClient) -> None:
        self._client = client

    async def run(self, params: CreateParams, ctx: ActionContext) -> dict[str, Any]:
        found = await self._client.find_channels(params.name)
        if found and found[0].status != "disabled":
            return {"channel_id": found[0].id, "name": params.name, "created": False}
        if found:  # Mainflux keeps a disabled channel's name taken: enable it again
            await self._client.enable_channel(found[0].id)
            return {"channel_id": found[0].id, "name": params.name, "created": True}
        channel = await self._client.create_channel(params.name, params.metadata)
        return {"channel_id": channel.id, "name": channel.name, "created": True}


class CreateConfigParams(Params):
    thing_id: str
    external_id: str
    external_key: str
    channels: list[str] = []
    name: str = ""
    #: The device's configuration: a table is stored as JSON text.
    content: dict[str, Any] | str = ""


class CreateConfig(Action):
    """Create the bootstrap config of an external id for a thing (the existing one is kept)."""

    type_name = "bootstrap.create_config"
    params_model = CreateConfigParams
    secret_params = frozenset({"external_key"})

    def __init__(self, client: SuperMQClient) -> None:
        self._client = client

    async def run(self, params: CreateConfigParams, ctx: ActionContext) -> dict[str, Any]:
        existing = await self._client.find_config(params.external_id)
        if existing is not None:
            return {"config_id": existing.thing_id, "external_id": params.external_id, "created": False}
        content = (
            params.content if isinstance(params.content, str) else json.dumps(params.content, sort_keys=True)
        )
        await self._client.add_config(
            {
                "thing_id": params.thing_id,
                "external_id": params.external_id,
                "external_key": params.external_key,
                "channels": params.channels,
                "name": params.name,
                "content": content,
            }
        )
        return {
            "config_id": params.thing_id,
            "external_id": params.external_id,
            "external_key": mask(params.external_key),
            "created": True,
        }


class ProvisionParams(Params):
    external_id: str


class Provision(Action):
    """Provision an enrolled device by its template: thing, channels, config, certificate,
    activation; idempotent, undone when a step fails for good. An unenrolled device is refused
    (``PermanentError`` saying why) and nothing is created."""

    type_name = "provision"
    params_model = ProvisionParams

    def __init__(self, provisioner: Provisioner) -> None:
        self.provisioner = provisioner

    async def run(self, params: ProvisionParams, ctx: ActionContext) -> dict[str, Any]:
        return await self.provisioner.provision(params.external_id)


def provision_actions(client: SuperMQClient, provisioner: Provisioner) -> list[Action]:
    return [CreateThing(client), CreateChannel(client), CreateConfig(client), Provision(provisioner)]
