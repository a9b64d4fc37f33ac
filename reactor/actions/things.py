"""Things actions: connect/disconnect a thing and channels, enable/disable a thing."""

from __future__ import annotations

from typing import Any

from reactor.actions.base import Action, ActionContext, Params
from reactor.supermq.client import SuperMQClient


class ConnectParams(Params):
    thing_id: str
    channel_ids: list[str]


class _Connection(Action):
    params_model = ConnectParams
    connect = True

    def __init__(self, client: SuperMQClient) -> None:
        self._client = client

    async def run(self, params: ConnectParams, ctx: ActionContext) -> dict[str, Any]:
        changed = await self._client.connect(params.thing_id, params.channel_ids, connect=self.connect)
        return {"thing_id": params.thing_id, "channel_ids": params.channel_ids, "changed": changed}


class Connect(_Connection):
    """Connect a thing to channels (an existing connection is not an error)."""

    type_name = "things.connect"


class Disconnect(_Connection):
    """Disconnect a thing from channels."""

    type_name = "things.disconnect"
    connect = False


class ThingParams(Params):
    thing_id: str


class _Status(Action):
    params_model = ThingParams
    enable = True

    def __init__(self, client: SuperMQClient) -> None:
        self._client = client

    async def run(self, params: ThingParams, ctx: ActionContext) -> dict[str, Any]:
        thing = await self._client.set_thing_enabled(params.thing_id, self.enable)
        return {"thing_id": thing.id, "status": thing.status}


class Enable(_Status):
    """Enable a thing."""

    type_name = "things.enable"


class Disable(_Status):
    """Disable a thing (it can no longer connect or publish)."""

    type_name = "things.disable"
    enable = False


def things_actions(client: SuperMQClient) -> list[Action]:
    return [Connect(client), Disconnect(client), Enable(client), Disable(client)]
