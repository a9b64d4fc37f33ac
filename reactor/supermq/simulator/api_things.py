"""The simulated things service: things, channels and connections, per era."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from reactor.supermq.simulator.api_common import _Api, _body, error

_NO_PERMISSION = "failed to perform authorization over the entity"

#: v0.14.0's refusals of a connect or disconnect (see ``State.assign``): (error, message).
_REFUSED = {
    400: ("malformed entity specification", "failed to add policies"),
    403: (_NO_PERMISSION, _NO_PERMISSION),
    409: ("entity already exists", "failed to add policies"),
}


def _missing_id() -> web.Response:
    """v0.14.0 (things/api/http/requests.go connectChannelThingRequest.validate): a missing id is
    ``errors.ErrCreateEntity`` under ``ErrValidation``, which internal/api EncodeError maps to 500."""
    return error(500, "failed to create entity in the db", "something went wrong with the request")


class ThingsApi(_Api):
    """Things, channels and connections."""

    def _unknown(self) -> web.Response:
        """An id that does not exist: Mainflux looks it up (404); v0.14.0 authorizes first, and
        SpiceDB has no permission on it (things/service.go ViewClient, internal/groups/service.go
        ViewGroup: ``ErrAuthorization``, 403)."""
        if self.state.mainflux:
            return error(404, "entity not found")
        return error(403, _NO_PERMISSION)

    async def view(self, request: web.Request) -> web.Response:
        thing = self.state.things.get(request.match_info["thingID"])
        return self._unknown() if thing is None else web.json_response(self.state.thing_view(thing))

    async def enable(self, request: web.Request) -> web.Response:
        return self._set_status(request, enable=True)

    async def disable(self, request: web.Request) -> web.Response:
        return self._set_status(request, enable=False)

    def _set_status(self, request: web.Request, *, enable: bool) -> web.Response:
        """v0.14.0 (things/service.go changeClientStatus): a thing in that status already is
        ``ErrStatusAlreadyAssigned`` under ``ErrEnableClient``/``ErrDisableClient``, which
        internal/api EncodeError maps to no case (500)."""
        thing = self.state.things.get(request.match_info["thingID"])
        if thing is None:
            return self._unknown()
        status = "enabled" if enable else "disabled"
        if thing.status == status:  # both eras: things/clients/service.go changeClientStatus
            verb = "enable" if enable else "disable"
            return error(500, "status already assigned", f"failed to {verb} client")
        thing.status = status
        self.state.effect("thing.enable" if enable else "thing.disable", thing.id)
        return web.json_response(self.state.thing_view(thing, with_secret=False))

    async def connect(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if self.state.mainflux:
            return self._policies(body, connect=True)
        thing_id, channel_id = str(body.get("thing_id", "")), str(body.get("channel_id", ""))
        if not thing_id or not channel_id:
            return _missing_id()
        status = self.state.assign(thing_id, channel_id)
        return web.Response(status=201) if status == 201 else error(status, *_REFUSED[status])

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if self.state.mainflux:
            return self._policies(body, connect=False)
        thing_id, channel_id = str(body.get("thing_id", "")), str(body.get("channel_id", ""))
        if not thing_id or not channel_id:
            return _missing_id()
        status = self.state.unassign(thing_id, channel_id)
        return web.Response(status=204) if status == 204 else error(status, *_REFUSED[status])

    def _policies(self, body: dict[str, Any], *, connect: bool) -> web.Response:
        """Mainflux's /connect and /disconnect (things/policies/api/http): subjects x objects;
        a repeated connect is an upsert (200); a missing list is a 400 "empty list provided"; an
        unknown channel fails the policy's foreign key (500)."""
        subjects, objects = body.get("subjects"), body.get("objects")
        if not isinstance(subjects, list) or not isinstance(objects, list) or not subjects or not objects:
            return error(400, "empty list provided", "something went wrong with the request")
        pairs = [(str(t), str(c)) for t in subjects for c in objects]
        if any(t not in self.state.things or c not in self.state.channels for t, c in pairs):
            return error(500, "violates foreign key constraint", "failed to create entity in the db")
        for thing_id, channel_id in pairs:
            (self.state.connect if connect else self.state.disconnect)(thing_id, channel_id)
        if not connect:
            return web.Response(status=204)
        actions = body.get("actions") or ["m_write", "m_read"]
        policies = [
            {
                "owner_id": self.state.owner,
                "subject": t,
                "object": c,
                "actions": actions,
                "created_at": "2023-10-05T10:00:00Z",
            }
            for t, c in pairs
        ]
        return web.json_response({"limit": 0, "offset": 0, "total": 0, "policies": policies})

    async def channel(self, request: web.Request) -> web.Response:
        found = self.state.channels.get(request.match_info["chanID"])
        return self._unknown() if found is None else web.json_response(self.state.channel_view(found))

    def routes(self) -> list[web.RouteDef]:
        auth = self._auth
        return [
            web.get("/things/{thingID}", auth(self.view)),
            web.post("/things/{thingID}/enable", auth(self.enable)),
            web.post("/things/{thingID}/disable", auth(self.disable)),
            web.post("/connect", auth(self.connect)),
            web.post("/disconnect", auth(self.disconnect)),
            web.get("/channels/{chanID}", auth(self.channel)),
        ]
