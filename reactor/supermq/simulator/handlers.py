"""The simulator's endpoints: the shapes and status codes of SuperMQ's code (Magistrala v0.14.0).

One aiohttp application per service, each on its own port, as SuperMQ deploys them. Sources:
``bootstrap/api/transport.go``, ``things/api/http``, ``certs/api``, ``users/api`` and
``http/api`` at v0.14.0, as summarised in ``supermq-facts.md`` §2 and §4.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from reactor.durations import parse_go_duration
from reactor.supermq.simulator.state import State

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_EMPTY = b""


def error(status: int, err: str, message: str = "") -> web.Response:
    """SuperMQ's error body: ``{"error": ..., "message": ...}``."""
    return web.json_response({"error": err, "message": message or err}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=json.dumps({"error": "unsupported content type", "message": "unsupported content type"}),
            content_type="application/json",
        )
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "malformed entity specification", "message": "failed to decode JSON"}),
            content_type="application/json",
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "malformed entity specification"}), content_type="application/json"
        )
    return body


def _authorized(state: State, request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    return header.startswith("Bearer ") and header[7:] in state.access_tokens


def user_auth(state: State, handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        if not _authorized(state, request):
            return error(401, "missing or invalid credentials provided", "authentication failed")
        return await handler(request)

    return wrapped


class _Api:
    """One service's endpoints over the shared state."""

    def __init__(self, state: State) -> None:
        self.state = state

    def _auth(self, handler: Handler) -> Handler:
        return user_auth(self.state, handler)

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError


# ---- users ------------------------------------------------------------------------------------


class UsersApi(_Api):
    """``/users/tokens/*``: log in and refresh."""

    async def issue(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if body.get("identity") != self.state.identity or body.get("secret") != self.state.secret:
            return error(401, "missing or invalid credentials provided", "authentication failed")
        return web.json_response(self.state.issue_tokens(), status=201)

    async def refresh(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        if token not in self.state.refresh_tokens:
            return error(401, "missing or invalid credentials provided", "authentication failed")
        self.state.refresh_tokens.discard(token)
        return web.json_response(self.state.issue_tokens(), status=201)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/users/tokens/issue", self.issue), web.post("/users/tokens/refresh", self.refresh)]


# ---- bootstrap --------------------------------------------------------------------------------


def _config_or_404(state: State, request: web.Request) -> Any:
    config = state.configs.get(request.match_info["configId"])
    if config is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "entity not found", "message": "config not found"}),
            content_type="application/json",
        )
    return config


class BootstrapApi(_Api):
    """``/things/configs``, ``/things/state``, ``/things/bootstrap``."""

    async def add(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if not body.get("external_id") or not body.get("external_key"):
            return error(400, "malformed entity specification", "missing external id or key")
        thing = self.state.things.get(body.get("thing_id", "")) or self.state.add_thing(body.get("name", ""))
        channels = [str(c) for c in body.get("channels", [])]
        if any(c not in self.state.channels for c in channels):
            return error(503, "failed to fetch channels", "a channel does not exist")
        config = self.state.add_config(
            thing,
            body["external_id"],
            body["external_key"],
            channels,
            body.get("content", ""),
            body.get("name", ""),
        )
        config.client_cert, config.client_key, config.ca_cert = (
            body.get("client_cert", ""),
            body.get("client_key", ""),
            body.get("ca_cert", ""),
        )
        self.state.effect("config.create", thing.id)
        return web.Response(status=201, headers={"Location": f"/things/configs/{thing.id}"})

    async def list_configs(self, request: web.Request) -> web.Response:
        try:
            offset = int(request.query.get("offset", "0"))
            limit = int(request.query.get("limit", "10"))
        except ValueError:
            return error(400, "malformed query parameters")
        if limit > 100 or limit < 1 or offset < 0:
            return error(400, "malformed query parameters", "limit must be between 1 and 100")
        configs = sorted(self.state.configs.values(), key=lambda c: c.thing_id)
        if "state" in request.query:
            configs = [c for c in configs if str(c.state) == request.query["state"]]
        if "name" in request.query:
            configs = [c for c in configs if request.query["name"].lower() in c.name.lower()]
        page = [self.state.config_view(c) for c in configs[offset : offset + limit]]
        for view in page:
            view.pop("channels")  # "Configs from this list don't contain channels"
        return web.json_response({"total": len(configs), "offset": offset, "limit": limit, "configs": page})

    async def view(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.config_view(_config_or_404(self.state, request)))

    async def update(self, request: web.Request) -> web.Response:
        config = _config_or_404(self.state, request)
        body = await _body(request)
        config.name, config.content = body.get("name", ""), body.get("content", "")
        self.state.effect("config.update", config.thing_id, content=config.content)
        return web.Response(status=200)

    async def remove(self, request: web.Request) -> web.Response:
        config = self.state.configs.pop(request.match_info["configId"], None)
        if config is not None:
            self.state.effect("config.remove", config.thing_id)
        return web.Response(status=204)

    async def certs(self, request: web.Request) -> web.Response:
        config = _config_or_404(self.state, request)
        body = await _body(request)
        config.client_cert, config.client_key, config.ca_cert = (
            body.get("client_cert", ""),
            body.get("client_key", ""),
            body.get("ca_cert", ""),
        )
        self.state.effect("config.certs", config.thing_id, client_cert=config.client_cert)
        return web.json_response(
            self.state.omit_empty(
                {
                    "thing_id": config.thing_id,
                    "client_cert": config.client_cert,
                    "client_key": config.client_key,
                    "ca_cert": config.ca_cert,
                }
            )
        )

    async def connections(self, request: web.Request) -> web.Response:
        config = _config_or_404(self.state, request)
        channels = [str(c) for c in (await _body(request)).get("channels", [])]
        if any(c not in self.state.channels for c in channels):
            return error(404, "entity not found", "a channel does not exist")
        if config.state == 1:
            for gone in set(config.channels) - set(channels):
                self.state.disconnect(config.thing_id, gone)
            for new in set(channels) - set(config.channels):
                self.state.connect(config.thing_id, new)
        config.channels = channels
        self.state.effect("config.connections", config.thing_id, channels=channels)
        return web.Response(status=200)

    async def change_state(self, request: web.Request) -> web.Response:
        config = _config_or_404(self.state, request)
        new = (await _body(request)).get("state")
        if new not in (0, 1):
            return error(400, "malformed entity specification", "invalid state")
        for channel in config.channels:
            if new == 1:
                self.state.connect(config.thing_id, channel)
            else:
                self.state.disconnect(config.thing_id, channel)
        config.state = new
        self.state.effect("config.state", config.thing_id, state=new)
        return web.Response(status=200)

    async def bootstrap(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Thing "):
            return error(401, "missing or invalid credentials provided")
        config = next(
            (c for c in self.state.configs.values() if c.external_id == request.match_info["externalId"]),
            None,
        )
        if config is None:
            return error(404, "entity not found")
        if header[6:] != config.external_key:
            return error(403, "failed to perform authorization over the entity")
        view = self.state.config_view(config)
        return web.json_response(
            self.state.omit_empty(
                {
                    "thing_id": view["thing_id"],
                    "thing_key": view["thing_key"],
                    "channels": view["channels"],
                    "content": config.content,
                    "client_cert": config.client_cert,
                    "client_key": config.client_key,
                    "ca_cert": config.ca_cert,
                }
            )
        )

    def routes(self) -> list[web.RouteDef]:
        auth = self._auth
        return [
            web.post("/things/configs", auth(self.add)),
            web.get("/things/configs", auth(self.list_configs)),
            web.patch("/things/configs/certs/{configId}", auth(self.certs)),
            web.put("/things/configs/connections/{configId}", auth(self.connections)),
            web.get("/things/configs/{configId}", auth(self.view)),
            web.put("/things/configs/{configId}", auth(self.update)),
            web.delete("/things/configs/{configId}", auth(self.remove)),
            web.put("/things/state/{configId}", auth(self.change_state)),
            web.get("/things/bootstrap/{externalId}", self.bootstrap),
        ]


# ---- things -----------------------------------------------------------------------------------


class ThingsApi(_Api):
    """Things, channels and connections."""

    async def view(self, request: web.Request) -> web.Response:
        thing = self.state.things.get(request.match_info["thingID"])
        return (
            error(404, "entity not found")
            if thing is None
            else web.json_response(self.state.thing_view(thing))
        )

    async def enable(self, request: web.Request) -> web.Response:
        return self._set_status(request, enable=True)

    async def disable(self, request: web.Request) -> web.Response:
        return self._set_status(request, enable=False)

    def _set_status(self, request: web.Request, *, enable: bool) -> web.Response:
        thing = self.state.things.get(request.match_info["thingID"])
        if thing is None:
            return error(404, "entity not found")
        thing.status = "enabled" if enable else "disabled"
        self.state.effect("thing.enable" if enable else "thing.disable", thing.id)
        return web.json_response(self.state.thing_view(thing, with_secret=False))

    async def connect(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if self.state.mainflux:
            return self._policies(body, connect=True)
        thing_id, channel_id = str(body.get("thing_id", "")), str(body.get("channel_id", ""))
        if thing_id not in self.state.things or channel_id not in self.state.channels:
            return error(404, "entity not found")
        if not self.state.connect(thing_id, channel_id):
            return error(409, "entity already exists")
        return web.Response(status=201)

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if self.state.mainflux:
            return self._policies(body, connect=False)
        thing_id, channel_id = str(body.get("thing_id", "")), str(body.get("channel_id", ""))
        if thing_id not in self.state.things or channel_id not in self.state.channels:
            return error(404, "entity not found")
        self.state.disconnect(thing_id, channel_id)
        return web.Response(status=204)

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
        return (
            error(404, "entity not found")
            if found is None
            else web.json_response(self.state.channel_view(found))
        )

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


# ---- certs ------------------------------------------------------------------------------------


class CertsApi(_Api):
    """``/certs`` and ``/serials`` (Vault PKI in SuperMQ; an in-memory CA here)."""

    async def issue(self, request: web.Request) -> web.Response:
        body = await _body(request)
        thing_id = str(body.get("thing_id", ""))
        if thing_id not in self.state.things:
            return error(404, "entity not found", "thing not found")
        try:
            ttl_s = parse_go_duration(str(body.get("ttl", "")))
        except ValueError as exc:
            return error(400, "malformed entity specification", str(exc))
        cert = self.state.issue_cert(thing_id, ttl_s)
        self.state.effect("cert.issue", thing_id, serial=cert.serial)
        return web.json_response(
            {
                "thing_id": thing_id,
                "client_cert": cert.pem,
                "client_key": cert.key_pem,
                "cert_serial": cert.serial,
                "expiration": cert.expiration,
            },
            status=201,
        )

    async def view(self, request: web.Request) -> web.Response:
        cert = self.state.certs.get(request.match_info["certID"])
        if cert is None:
            return error(404, "entity not found")
        return web.json_response(
            {
                "thing_id": cert.thing_id,
                "client_cert": cert.pem,
                "client_key": "",
                "cert_serial": cert.serial,
                "expiration": cert.expiration,
            }
        )

    async def revoke(self, request: web.Request) -> web.Response:
        thing_id = request.match_info["certID"]  # the code treats it as a thing id (facts §4.3)
        mine = [c for c in self.state.certs.values() if c.thing_id == thing_id and not c.revoked]
        if not mine:
            return error(404, "entity not found")
        for cert in mine:
            cert.revoked = True
            self.state.effect("cert.revoke", thing_id, serial=cert.serial)
        return web.json_response({"revocation_time": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})

    async def serials(self, request: web.Request) -> web.Response:
        thing_id = request.match_info["thingID"]
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", "10"))
        mine = [c for c in self.state.certs.values() if c.thing_id == thing_id and not c.revoked]
        page = [
            {"thing_id": c.thing_id, "cert_serial": c.serial, "expiration": c.expiration}
            for c in mine[offset : offset + limit]
        ]
        return web.json_response({"total": len(mine), "offset": offset, "limit": limit, "certs": page})

    def routes(self) -> list[web.RouteDef]:
        auth = self._auth
        return [
            web.post("/certs", auth(self.issue)),
            web.get("/certs/{certID}", auth(self.view)),
            web.delete("/certs/{certID}", auth(self.revoke)),
            web.get("/serials/{thingID}", auth(self.serials)),
        ]


# ---- http adapter -----------------------------------------------------------------------------


class HttpApi(_Api):
    """The HTTP adapter: publish a message to a channel as a thing."""

    async def publish(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["id"]
        if channel_id not in self.state.channels:
            return error(404, "entity not found")
        header = request.headers.get("Authorization", "")
        key = header[6:] if header.startswith("Thing ") else ""
        thing = next((t for t in self.state.things.values() if t.key == key), None)
        if thing is None or (thing.id, channel_id) not in self.state.connections:
            return error(401, "missing or invalid credentials provided")
        payload = await request.read()
        self.state.messages.append(
            {
                "channel": channel_id,
                "subtopic": request.match_info.get("subtopic", ""),
                "publisher": thing.id,
                "payload": payload,
                "at": time.time(),
            }
        )
        self.state.effect("message.publish", thing.id, channel=channel_id)
        return web.Response(status=202)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/channels/{id}/messages", self.publish),
            web.post("/channels/{id}/messages/{subtopic:.+}", self.publish),
        ]


def routes(service: str, state: State) -> list[web.RouteDef]:
    """The routes of one service."""
    apis: dict[str, type[_Api]] = {
        "users": UsersApi,
        "things": ThingsApi,
        "bootstrap": BootstrapApi,
        "certs": CertsApi,
        "http": HttpApi,
    }
    return apis[service](state).routes()
