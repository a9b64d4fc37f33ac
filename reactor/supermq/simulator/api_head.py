"""The simulated SuperMQ HEAD (absmach/supermq 791e084) users, clients and channels services.

Sources at that commit: users/api/{users,requests,responses}.go, clients/api/http, channels/api/
http, channels/service.go, and api/http/common.go EncodeError, which answers by the error's type
(a request error 400, authentication 401, authorization 403, a service error 422, not found 404).
Every route but the login and refresh sits under ``/{domainID}/``; the admin is a member of the
simulator's one domain (``State.domain_id``), any other domain is refused as the domain check does.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from reactor.supermq.simulator.api_common import Handler, _Api, _body, error
from reactor.supermq.simulator.state import Channel, State, Thing

_NO_PERMISSION = "failed to perform authorization over the entity"
#: pkg/connections/type.go: the connection types, as their JSON (case-insensitive) names them.
CONN_TYPES = ("publish", "subscribe")


def in_domain(state: State, handler: Handler) -> Handler:
    """authn ``WithDomainCheck``: a domain the user is no member of is an authorization error (403)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        if request.match_info.get("domainID") != state.domain_id:
            return error(403, _NO_PERMISSION, "domain check failed")
        return await handler(request)

    return wrapped


class _HeadApi(_Api):
    def _auth(self, handler: Handler) -> Handler:
        return super()._auth(in_domain(self.state, handler))


class HeadUsersApi(_Api):
    """``/users/tokens/issue`` (``username``/``password``) and ``/users/tokens/refresh``."""

    async def issue(self, request: web.Request) -> web.Response:
        """users/api/requests.go loginUserReq.validate: a missing username or password is a request
        error (400); users/service.go IssueToken: a wrong one is ``svcerr.ErrLogin`` (401)."""
        body = await _body(request)
        username, password = body.get("username"), body.get("password")
        if not username or not password:
            return error(400, "missing username or password", "malformed request body")
        if username != self.state.identity or password != self.state.secret:
            return error(401, "invalid credentials", "failed to login")
        return web.json_response(self.state.issue_tokens() | {"access_type": "Bearer"}, status=201)

    async def refresh(self, request: web.Request) -> web.Response:
        """users/api/users.go decodeRefreshToken: the refresh token is the bearer (no body is read);
        a token auth does not know is an authentication error (401). tokenRes.Code() is 201."""
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        if token not in self.state.refresh_tokens:
            return error(401, "missing or invalid credentials provided", "authentication failed")
        return web.json_response(self.state.issue_tokens() | {"access_type": "Bearer"}, status=201)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/users/tokens/issue", self.issue), web.post("/users/tokens/refresh", self.refresh)]


def client_view(state: State, thing: Thing) -> dict[str, object]:
    """clients/clients.go Client: empty fields left out (``omitempty``), status as its word."""
    view: dict[str, object] = {
        "id": thing.id,
        "name": thing.name,
        "domain_id": state.domain_id,
        "credentials": {"identity": thing.name, "secret": thing.key},
        "status": thing.status,
        "created_at": "2026-04-03T10:00:00Z",
        "updated_at": "2026-04-03T10:00:00Z",
    }
    if thing.metadata:
        view["metadata"] = thing.metadata
    if thing.tags:
        view["tags"] = thing.tags
    return view


def channel_view(state: State, channel: Channel) -> dict[str, object]:
    view: dict[str, object] = {
        "id": channel.id,
        "name": channel.name,
        "domain_id": state.domain_id,
        "status": channel.status,
        "created_at": "2026-04-03T10:00:00Z",
        "updated_at": "2026-04-03T10:00:00Z",
    }
    return view | ({"metadata": channel.metadata} if channel.metadata else {})


class ClientsApi(_HeadApi):
    """``/{domainID}/clients/{clientID}``, ``.../enable``, ``.../disable``."""

    async def view(self, request: web.Request) -> web.Response:
        """clients/middleware authorizes first: an id that does not exist has no permission (403)."""
        thing = self.state.things.get(request.match_info["clientID"])
        return (
            error(403, _NO_PERMISSION) if thing is None else web.json_response(client_view(self.state, thing))
        )

    async def enable(self, request: web.Request) -> web.Response:
        return self._set_status(request, enable=True)

    async def disable(self, request: web.Request) -> web.Response:
        return self._set_status(request, enable=False)

    def _set_status(self, request: web.Request, *, enable: bool) -> web.Response:
        """clients/service.go changeClientStatus: the status it has already is
        ``svcerr.ErrStatusAlreadyAssigned``, a service error (422)."""
        thing = self.state.things.get(request.match_info["clientID"])
        if thing is None:
            return error(403, _NO_PERMISSION)
        status = "enabled" if enable else "disabled"
        if thing.status == status:
            return error(
                422, "status already assigned", f"failed to {'enable' if enable else 'disable'} client"
            )
        thing.status = status
        self.state.effect("thing.enable" if enable else "thing.disable", thing.id)
        return web.json_response(client_view(self.state, thing))

    async def create(self, request: web.Request) -> web.Response:
        """clients/api/http ``POST /{domainID}/clients``: the body a clients.Client (decoded as
        JSON, 400 when it is not); the service chooses id and secret when none is given
        (clients/service.go CreateClients); 201, ``Location: /clients/<id>`` (createClientRes)."""
        body = await _body(request)
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            return error(400, "malformed request body", "failed to decode client")
        credentials = body.get("credentials")
        secret = credentials.get("secret", "") if isinstance(credentials, dict) else ""
        thing = self.state.add_thing(str(body.get("name", "")), key=str(secret))
        thing.name = str(body.get("name", ""))
        thing.metadata = dict(metadata or {})
        self.state.effect("thing.create", thing.id, name=thing.name)
        view = client_view(self.state, thing)
        return web.json_response(view, status=201, headers={"Location": f"/clients/{thing.id}"})

    async def list_clients(self, request: web.Request) -> web.Response:
        """decodeListClients: ``name`` in part, ``status`` enabled by default (``all``, ``enabled``,
        ``disabled``; anything else 400); clientsPageRes ``{limit, offset, total, clients}``."""
        status = request.query.get("status", "enabled")
        if status not in ("all", "enabled", "disabled"):
            return error(400, "invalid client status", "malformed query parameters")
        name = request.query.get("name", "").lower()
        found = [
            t for t in self.state.things.values() if name in t.name.lower() and status in ("all", t.status)
        ]
        return _page(request, "clients", [client_view(self.state, t) for t in found])

    async def delete(self, request: web.Request) -> web.Response:
        """clients/service.go Delete: the client's connections removed, its status set to deleted
        (no longer listed); 204 (deleteClientRes). An unknown id is refused by authorization (403)."""
        thing = self.state.things.pop(request.match_info["clientID"], None)
        if thing is None:
            return error(403, _NO_PERMISSION)
        self.state.connections = {p for p in self.state.connections if p[0] != thing.id}
        self.state.typed_connections = {c for c in self.state.typed_connections if c[0] != thing.id}
        self.state.effect("thing.remove", thing.id)
        return web.Response(status=204)

    def routes(self) -> list[web.RouteDef]:
        auth = self._auth
        return [
            web.post("/{domainID}/clients", auth(self.create)),
            web.get("/{domainID}/clients", auth(self.list_clients)),
            web.delete("/{domainID}/clients/{clientID}", auth(self.delete)),
            web.get("/{domainID}/clients/{clientID}", auth(self.view)),
            web.post("/{domainID}/clients/{clientID}/enable", auth(self.enable)),
            web.post("/{domainID}/clients/{clientID}/disable", auth(self.disable)),
        ]


class ChannelsApi(_HeadApi):
    """``/{domainID}/channels/{chanID}``, ``/{domainID}/channels/connect`` and ``/disconnect``."""

    async def channel(self, request: web.Request) -> web.Response:
        found = self.state.channels.get(request.match_info["chanID"])
        return (
            error(403, _NO_PERMISSION)
            if found is None
            else web.json_response(channel_view(self.state, found))
        )

    async def connect(self, request: web.Request) -> web.Response:
        """channels/service.go Connect: every channel and client must exist (else
        ``svcerr.ErrCreateEntity``, 422); a (channel, client, type) connected already is
        ``svcerr.ErrConflict``, a request error (400), and nothing is added (checked before the
        insert). Answers 201 with no body (channels/api/http/responses.go connectRes)."""
        parsed = await self._request(request)
        if isinstance(parsed, web.Response):
            return parsed
        clients, channels, types = parsed
        if any(c not in self.state.channels for c in channels) or any(
            t not in self.state.things for t in clients
        ):
            return error(422, "failed to create entity", "entity not found")
        wanted = [(t, c, k) for c in channels for t in clients for k in types]
        for t, c, k in wanted:
            if (t, c, k) in self.state.typed_connections:
                domain = self.state.domain_id
                detail = f"channel {c} and client {t} are already connected for type {k} in domain {domain} "
                return error(400, detail, "entity already exists")
        for t, c, k in wanted:
            self.state.typed_connections.add((t, c, k))
            self.state.connect(t, c)
        return web.Response(status=201)

    async def disconnect(self, request: web.Request) -> web.Response:
        """channels/service.go Disconnect: deletes the rows there are; 204 (disconnectRes)."""
        parsed = await self._request(request)
        if isinstance(parsed, web.Response):
            return parsed
        clients, channels, types = parsed
        if any(c not in self.state.channels for c in channels):
            return error(422, "failed to remove entity", "entity not found")
        for c in channels:
            for t in clients:
                self.state.typed_connections -= {(t, c, k) for k in types}
                if not any((t, c, k) in self.state.typed_connections for k in CONN_TYPES):
                    self.state.disconnect(t, c)
        return web.Response(status=204)

    async def _request(self, request: web.Request) -> tuple[list[str], list[str], list[str]] | web.Response:
        """channels/api/http/requests.go connectRequest.validate: ids present and not blank, types
        known (a missing one is ``apiutil.ErrMissingID``, a request error: 400)."""
        body = await _body(request)
        lists = [_ids(body.get(k)) for k in ("client_ids", "channel_ids", "types")]
        if not all(lists):
            return error(400, "missing entity id", "malformed request body")
        clients, channels, types = lists
        if any(k.lower() not in CONN_TYPES for k in types):
            return error(400, "invalid connection type", "malformed request body")
        return clients, channels, [k.lower() for k in types]

    async def create(self, request: web.Request) -> web.Response:
        """channels/api/http ``POST /{domainID}/channels``: a channels.Channel; 201,
        ``Location: /channels/<id>`` (createChannelRes). Names are not unique at HEAD."""
        body = await _body(request)
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            return error(400, "malformed request body", "failed to decode channel")
        channel = self.state.add_channel(str(body.get("name", "")), metadata=dict(metadata or {}))
        channel.name = str(body.get("name", ""))
        self.state.effect("channel.create", channel.id, name=channel.name)
        view = channel_view(self.state, channel)
        return web.json_response(view, status=201, headers={"Location": f"/channels/{channel.id}"})

    async def list_channels(self, request: web.Request) -> web.Response:
        """decodeListChannels: ``name`` in part, ``status`` enabled by default; channelsPageRes."""
        status = request.query.get("status", "enabled")
        if status not in ("all", "enabled", "disabled"):
            return error(400, "invalid channel status", "malformed query parameters")
        name = request.query.get("name", "").lower()
        found = [
            c for c in self.state.channels.values() if name in c.name.lower() and status in ("all", c.status)
        ]
        return _page(request, "channels", [channel_view(self.state, c) for c in found])

    async def delete(self, request: web.Request) -> web.Response:
        """channels/service.go RemoveChannel: connections removed, status deleted; 204. Bootstrap
        keeps the channel in its own table until its consumer hears of it (``bootstrap_channels``)."""
        channel = self.state.channels.pop(request.match_info["chanID"], None)
        if channel is None:
            return error(403, _NO_PERMISSION)
        self.state.connections = {p for p in self.state.connections if p[1] != channel.id}
        self.state.typed_connections = {c for c in self.state.typed_connections if c[1] != channel.id}
        self.state.effect("channel.remove", channel.id)
        return web.Response(status=204)

    async def enable(self, request: web.Request) -> web.Response:
        """channels/service.go EnableChannel: the status it has is ``ErrStatusAlreadyAssigned``, a
        service error (422); 200 with the channel (changeChannelStatusRes)."""
        channel = self.state.channels.get(request.match_info["chanID"])
        if channel is None:
            return error(403, _NO_PERMISSION)
        if channel.status == "enabled":
            return error(422, "status already assigned", "failed to enable channel")
        channel.status = "enabled"
        self.state.effect("channel.enable", channel.id)
        return web.json_response(channel_view(self.state, channel))

    def routes(self) -> list[web.RouteDef]:
        auth = self._auth
        return [
            web.post("/{domainID}/channels", auth(self.create)),
            web.get("/{domainID}/channels", auth(self.list_channels)),
            web.delete("/{domainID}/channels/{chanID}", auth(self.delete)),
            web.post("/{domainID}/channels/{chanID}/enable", auth(self.enable)),
            web.get("/{domainID}/channels/{chanID}", auth(self.channel)),
            web.post("/{domainID}/channels/connect", auth(self.connect)),
            web.post("/{domainID}/channels/disconnect", auth(self.disconnect)),
        ]


def _page(request: web.Request, key: str, views: list[dict[str, Any]]) -> web.Response:
    """A page as HEAD answers it: ``limit``, ``offset`` and the list ``omitempty``, ``total``
    always (clients/api/http/responses.go clientsPageRes, channels/api/http/responses.go pageRes);
    a limit over 100 or a number that is none is a request error (400)."""
    try:
        offset, limit = int(request.query.get("offset", "0")), int(request.query.get("limit", "10"))
    except ValueError:
        return error(400, "malformed query parameters")
    if limit > 100 or limit < 0 or offset < 0:
        return error(400, "malformed query parameters", "limit must be between 1 and 100")
    page: dict[str, Any] = {"total": len(views), "limit": limit, "offset": offset}
    page[key] = views[offset : offset + limit]
    return web.json_response({k: v for k, v in page.items() if k == "total" or v})


def _ids(value: object) -> list[str]:
    """A list of non-blank strings, else empty (what ``validate`` refuses)."""
    if not isinstance(value, list) or not all(isinstance(i, str) and i.strip() for i in value):
        return []
    return [str(i) for i in value]
