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

    # ---- create, list by name, remove (what provisioning needs) -------------------------------

    async def create_thing(self, request: web.Request) -> web.Response:
        """Both eras: 201, ``Location: /things/<id>``, the thing with its key."""
        body = await _body(request)
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        thing = self.state.add_thing(str(body.get("name", "")) or "thing")
        thing.metadata = dict(metadata or {})
        self.state.effect("thing.create", thing.id, name=thing.name)
        view = self.state.thing_view(thing)
        return web.json_response(view, status=201, headers={"Location": f"/things/{thing.id}"})

    async def list_things(self, request: web.Request) -> web.Response:
        """Both eras filter ``name`` in part and ``status`` (default enabled)."""
        name, status = request.query.get("name", ""), request.query.get("status", "enabled")
        found = [
            t
            for t in self.state.things.values()
            if name.lower() in t.name.lower() and status in ("all", t.status)
        ]
        views = [self.state.thing_view(t) for t in found]
        return web.json_response(self._page("things", views, request))

    def _page(self, key: str, views: list[dict[str, Any]], request: web.Request) -> dict[str, Any]:
        offset, limit = int(request.query.get("offset", "0")), int(request.query.get("limit", "10"))
        page: dict[str, Any] = {
            "total": len(views),
            "offset": offset,
            "limit": limit,
            key: views[offset : offset + limit],
        }
        return page if self.state.mainflux or key != "channels" else page | {"level": 0}

    async def delete_thing(self, request: web.Request) -> web.Response:
        """v0.14.0: ``DELETE /things/{id}``, 204 (an unknown id too)."""
        thing = self.state.things.pop(request.match_info["thingID"], None)
        if thing is not None:
            self.state.connections = {p for p in self.state.connections if p[0] != thing.id}
            self.state.effect("thing.remove", thing.id)
        return web.Response(status=204)

    async def create_channel(self, request: web.Request) -> web.Response:
        body = await _body(request)
        name = str(body.get("name", ""))
        if self.state.mainflux and any(c.name == name for c in self.state.channels.values()):
            # groups: UNIQUE (owner_id, name), disabled channels included (things/postgres/init.go)
            return error(409, "entity already exists", "failed to create entity in the db")
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        channel = self.state.add_channel(
            str(body.get("name", "")) or "channel", metadata=dict(metadata or {})
        )
        self.state.effect("channel.create", channel.id, name=channel.name)
        view = self.state.channel_view(channel)
        return web.json_response(view, status=201, headers={"Location": f"/channels/{channel.id}"})

    async def list_channels(self, request: web.Request) -> web.Response:
        name, status = request.query.get("name", ""), request.query.get("status", "enabled")
        found = [
            c
            for c in self.state.channels.values()
            if name.lower() in c.name.lower() and status in ("all", c.status)
        ]
        return web.json_response(self._page("channels", [self.state.channel_view(c) for c in found], request))

    async def delete_channel(self, request: web.Request) -> web.Response:
        channel = self.state.channels.pop(request.match_info["chanID"], None)
        if channel is not None:
            self.state.connections = {p for p in self.state.connections if p[1] != channel.id}
            self.state.effect("channel.remove", channel.id)
        return web.Response(status=204)

    async def disable_channel(self, request: web.Request) -> web.Response:
        """Both eras: ``POST /channels/{id}/disable`` (Mainflux's only way to remove one)."""
        return self._channel_status(request, "disabled")

    async def enable_channel(self, request: web.Request) -> web.Response:
        return self._channel_status(request, "enabled")

    def _channel_status(self, request: web.Request, status: str) -> web.Response:
        channel = self.state.channels.get(request.match_info["chanID"])
        if channel is None:
            return self._unknown()
        verb = status.removesuffix("d")
        if channel.status == status:
            return error(500, "status already assigned", f"failed to {verb} group")
        channel.status = status
        self.state.effect(f"channel.{verb}", channel.id)
        return web.json_response(self.state.channel_view(channel))

    def _provisioning_routes(self) -> list[web.RouteDef]:
        auth = self._auth
        routes = [
            web.post("/things", auth(self.create_thing)),
            web.get("/things", auth(self.list_things)),
            web.post("/channels", auth(self.create_channel)),
            web.get("/channels", auth(self.list_channels)),
        ]
        routes += [
            web.post("/channels/{chanID}/disable", auth(self.disable_channel)),
            web.post("/channels/{chanID}/enable", auth(self.enable_channel)),
        ]
        if self.state.mainflux:  # no delete at 59bcb72f52c0
            return routes
        return [
            *routes,
            web.delete("/things/{thingID}", auth(self.delete_thing)),
            web.delete("/channels/{chanID}", auth(self.delete_channel)),
        ]

    def routes(self) -> list[web.RouteDef]:
        auth = self._auth
        return [
            *self._provisioning_routes(),
            web.get("/things/{thingID}", auth(self.view)),
            web.post("/things/{thingID}/enable", auth(self.enable)),
            web.post("/things/{thingID}/disable", auth(self.disable)),
            web.post("/connect", auth(self.connect)),
            web.post("/disconnect", auth(self.disconnect)),
            web.get("/channels/{chanID}", auth(self.channel)),
        ]
