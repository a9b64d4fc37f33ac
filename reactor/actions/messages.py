"""``message.publish``: notify a device on a channel through SuperMQ's HTTP adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reactor.actions.base import Action, ActionContext, Params
from reactor.supermq.client import SuperMQClient


class PublishParams(Params):
    channel_id: str
    thing_key: str
    payload: Any
    subtopic: str = ""
    content_type: str = "application/senml+json"


class Publish(Action):
    """Publish ``payload`` (JSON, or a string as is) to a channel as the thing whose key is given."""

    type_name = "message.publish"
    params_model = PublishParams
    secret_params = frozenset({"thing_key"})
    repeatable = False  # the device would get the message twice

    def __init__(self, client: SuperMQClient) -> None:
        self._client = client

    def refused(self, params: Mapping[str, Any]) -> str:
        profile = self._client.known_profile
        if params.get("subtopic") and profile is not None and not profile.publishes_subtopics:
            return profile.no_subtopics
        return ""

    async def run(self, params: PublishParams, ctx: ActionContext) -> dict[str, Any]:
        await self._client.publish(
            params.channel_id,
            params.thing_key,
            params.payload,
            subtopic=params.subtopic,
            content_type=params.content_type,
        )
        return {"channel_id": params.channel_id, "subtopic": params.subtopic}
