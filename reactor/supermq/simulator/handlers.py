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
from reactor.supermq.simulator.state import Config, State, Thing

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
        identity, secret = body.get("identity"), body.get("secret")
        if self.state.mainflux:
            if identity != self.state.identity or secret != self.state.secret:
                return error(401, "missing or invalid credentials provided", "authentication failed")
        elif (refused := self._login_refused(identity, secret)) is not None:
            return refused
        return web.json_response(self.state.issue_tokens(), status=201)

    def _login_refused(self, identity: Any, secret: Any) -> web.Response | None:
        """v0.14.0 (users/api/clients.go: internal/api EncodeError; users/service.go IssueToken):
        a missing field fails validation, which no case maps (500); an unknown identity is
        ``repoerr.ErrNotFound`` (404); a wrong secret is ``errors.ErrLogin`` (500)."""
        if not identity or not secret:
            what = "missing identity" if not identity else "missing secret"
            return error(500, what, "something went wrong with the request")
        if identity != self.state.identity:
            return error(404, "entity not found", "entity not found")
        if secret != self.state.secret:
            return error(500, "compare hash and password failed", "invalid user id or secret")
        return None

    async def refresh(self, request: web.Request) -> web.Response:
        """Mainflux: a refresh token is spent by its use. v0.14.0 (auth/service.go refreshKey) only
        parses the JWT, so one can be reused until it expires; an expired one is ``ErrExpiry``,
        which auth/api/grpc/server.go encodeError maps to no code (Internal), so users answers 500;
        a garbled one is ``errors.ErrAuthentication`` (401)."""
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        if token in self.state.expired_refresh_tokens and not self.state.mainflux:
            return error(500, "token is expired", "failed to retrieve key data")
        if token not in self.state.refresh_tokens:
            return error(401, "missing or invalid credentials provided", "authentication failed")
        if self.state.mainflux:
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


def _things_failed() -> web.Response:
    """bootstrap's ``ErrThings``, returned bare (bootstrap/service.go): 503, no inner error."""
    return error(503, "", "failed to receive response from Things service")


class BootstrapApi(_Api):
    """``/things/configs``, ``/things/state``, ``/things/bootstrap``."""

    async def add(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if not self.state.mainflux:
            return self._add_v014(body)
        if not body.get("external_id") or not body.get("external_key"):
            return error(400, "malformed entity specification", "missing external id or key")
        thing = self.state.things.get(body.get("thing_id", "")) or self.state.add_thing(body.get("name", ""))
        channels = [str(c) for c in body.get("channels", [])]
        if any(c not in self.state.channels for c in channels):
            return error(503, "failed to fetch channels", "a channel does not exist")
        return self._save(thing, body, channels)

    def _add_v014(self, body: dict[str, Any]) -> web.Response:
        """v0.14.0 (bootstrap/service.go Add): after the checks (``_add_refused``), a thing or
        external id that has a config already breaks a UNIQUE constraint (bootstrap/postgres/
        configs.go Save: ``ErrConflict``, 409), and a thing created for it is disabled again."""
        refused = self._add_refused(body)
        if refused is not None:
            return refused
        thing_id = str(body.get("thing_id", ""))
        thing = self.state.things[thing_id] if thing_id else self.state.add_thing()
        external_ids = {c.external_id for c in self.state.configs.values()}
        if thing.id in self.state.configs or body["external_id"] in external_ids:
            if not thing_id:
                thing.status = "disabled"
                self.state.effect("thing.disable", thing.id)
            return error(409, "entity already exists", "failed to add bootstrap configuration")
        channels = [str(c) for c in body.get("channels", [])]
        return self._save(thing, body, channels)

    def _add_refused(self, body: dict[str, Any]) -> web.Response | None:
        """bootstrap/api/requests.go addReq.validate: a missing external id is ``ErrMissingID``
        (400), a missing external key ``ErrBearerKey`` (401); then bootstrap/service.go Add: an
        unknown channel fails ``connectionChannels`` as ``ErrMalformedEntity`` (400), an unknown
        thing id fails ``bs.thing`` as ``ErrThings`` (503)."""
        why = "something went wrong with the request"
        if not body.get("external_id"):
            return error(400, "missing entity id", why)
        if not body.get("external_key"):
            return error(401, "missing or invalid bearer entity key", why)
        if not all(self.state.known_to_bootstrap(str(c)) for c in body.get("channels", [])):
            return error(400, "malformed entity specification", "failed to check channels connections")
        thing_id = str(body.get("thing_id", ""))
        if thing_id and thing_id not in self.state.things:
            return error(503, "failed to find thing", "failed to receive response from Things service")
        return None

    def _save(self, thing: Thing, body: dict[str, Any], channels: list[str]) -> web.Response:
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
        """v0.14.0 (bootstrap/api/requests.go listReq.validate) refuses only ``limit > 100``;
        its filters (bootstrap/api/transport.go) match ``external_id``, ``thing_id`` and
        ``thing_key`` whole, as ``state``, and ``name`` in part."""
        try:
            offset = int(request.query.get("offset", "0"))
            limit = int(request.query.get("limit", "10"))
        except ValueError:
            return error(400, "malformed query parameters")
        lowest = 1 if self.state.mainflux else 0
        if limit > 100 or limit < lowest or offset < 0:
            return error(400, "malformed query parameters", "limit must be between 1 and 100")
        configs = sorted(self.state.configs.values(), key=lambda c: c.thing_id)
        if "state" in request.query:
            configs = [c for c in configs if str(c.state) == request.query["state"]]
        if "name" in request.query:
            configs = [c for c in configs if request.query["name"].lower() in c.name.lower()]
        if not self.state.mainflux:
            configs = [c for c in configs if self._matches(c, request.query)]
        page = [self.state.config_view(c) for c in configs[offset : offset + limit]]
        for view in page:
            view.pop("channels", None)  # "Configs from this list don't contain channels"
        return web.json_response({"total": len(configs), "offset": offset, "limit": limit, "configs": page})

    def _matches(self, config: Config, query: Any) -> bool:
        thing = self.state.things.get(config.thing_id)
        fields = {
            "external_id": config.external_id,
            "thing_id": config.thing_id,
            "thing_key": thing.key if thing else "",
        }
        return all(query[k] == v for k, v in fields.items() if k in query)

    async def _config_and_body(self, request: web.Request) -> tuple[Config, dict[str, Any]]:
        """The config named and the request body; v0.14.0 decodes the body first (a bad body is
        415/400 even for an unknown config), Mainflux looks the config up first."""
        if self.state.mainflux:
            config = _config_or_404(self.state, request)
            return config, await _body(request)
        body = await _body(request)
        return _config_or_404(self.state, request), body

    async def view(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.config_view(_config_or_404(self.state, request)))

    async def update(self, request: web.Request) -> web.Response:
        config, body = await self._config_and_body(request)
        config.name, config.content = body.get("name", ""), body.get("content", "")
        self.state.effect("config.update", config.thing_id, content=config.content)
        return web.Response(status=200)

    async def remove(self, request: web.Request) -> web.Response:
        config = self.state.configs.pop(request.match_info["configId"], None)
        if config is not None:
            self.state.effect("config.remove", config.thing_id)
        return web.Response(status=204)

    async def certs(self, request: web.Request) -> web.Response:
        config, body = await self._config_and_body(request)
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
        config, body = await self._config_and_body(request)
        channels = [str(c) for c in body.get("channels", [])]
        if not self.state.mainflux:
            return self._connections_v014(config, channels)
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

    def _connections_v014(self, config: Config, channels: list[str]) -> web.Response:
        """v0.14.0 (bootstrap/service.go UpdateConnections): a channel bootstrap does not know yet
        fails ``connectionChannels`` as ``ErrMalformedEntity`` (400); an active config disconnects
        the removed channels, then connects the added ones, and any refusal but not-found is
        ``ErrThings`` (503, what was done stays done); the store (bootstrap/postgres/configs.go
        updateConnections) returns early on an empty list, so ``[]`` leaves the channels listed."""
        if not all(self.state.known_to_bootstrap(c) for c in channels):
            return error(400, "malformed entity specification", "failed to update connections")
        if config.state == 1:
            gone = [c for c in config.channels if c not in channels]
            new = [c for c in channels if c not in config.channels]
            if not self._disconnect_all(config.thing_id, gone) or not self._connect_all(config.thing_id, new):
                return _things_failed()
        if channels:
            config.channels = channels
            self.state.keep_channels(channels)
            self.state.effect("config.connections", config.thing_id, channels=channels)
        return web.Response(status=200)

    def _connect_all(self, thing_id: str, channels: list[str]) -> bool:
        """bootstrap's ``sdk.Connect`` per channel, which wants 201 (pkg/sdk/go/channels.go); the
        first refusal stops it."""
        return all(self.state.assign(thing_id, c) == 201 for c in channels)

    def _disconnect_all(self, thing_id: str, channels: list[str]) -> bool:
        """bootstrap's ``sdk.DisconnectThing`` per channel, which wants 204; not-found would be
        skipped, but v0.14.0's things never answers it (a deleted channel is 403)."""
        return all(self.state.unassign(thing_id, c) == 204 for c in channels)

    async def change_state(self, request: web.Request) -> web.Response:
        config, body = await self._config_and_body(request)
        new = body.get("state")
        # JSON true is no state to v0.14.0 (json.Decode into an int fails), though True == 1 here
        if new not in (0, 1) or (isinstance(new, bool) and not self.state.mainflux):
            return error(400, "malformed entity specification", "invalid state")
        if not self.state.mainflux:
            return self._change_state_v014(config, new)
        for channel in config.channels:
            if new == 1:
                self.state.connect(config.thing_id, channel)
            else:
                self.state.disconnect(config.thing_id, channel)
        config.state = new
        self.state.effect("config.state", config.thing_id, state=new)
        return web.Response(status=200)

    def _change_state_v014(self, config: Config, new: int) -> web.Response:
        """v0.14.0 (bootstrap/service.go ChangeState): the same state is a no-op; activation
        connects every channel and a refusal (409 for a pair connected already) is ``ErrThings``
        (503), the state unchanged and the channels before it still connected; deactivation
        disconnects, refusals but not-found likewise 503."""
        if new == config.state:
            return web.Response(status=200)
        if new == 1:
            done = self._connect_all(config.thing_id, config.channels)
        else:
            done = self._disconnect_all(config.thing_id, config.channels)
        if not done:
            return _things_failed()
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
                    "thing_key": view.get("thing_key", ""),
                    "channels": view.get("channels"),  # v0.14.0 bootstrapRes: null, not omitted
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


# ---- certs ------------------------------------------------------------------------------------


#: Go's zero ``time.Time`` as encoding/json writes it.
_ZERO_TIME = "0001-01-01T00:00:00Z"


class CertsApi(_Api):
    """``/certs`` and ``/serials`` (Vault PKI in SuperMQ; an in-memory CA here)."""

    async def issue(self, request: web.Request) -> web.Response:
        """v0.14.0 validates first (certs/api/requests.go addCertsReq), then fetches the thing from
        things (certs/service.go IssueCert), whose 403 for an unknown one is wrapped in
        ``ErrFailedCertCreation``; certs/api/transport.go encodeError has no 403 or 404 case (500)."""
        if request.headers.get("Content-Type") != "application/json" and not self.state.mainflux:
            return error(415, "invalid content type", "something went wrong with the request")
        body = await _body(request)
        thing_id = str(body.get("thing_id", ""))
        known = thing_id in self.state.things
        if not known and self.state.mainflux:
            return error(404, "entity not found", "thing not found")
        if not thing_id:
            return error(400, "missing entity id", "something went wrong with the request")
        try:
            ttl_s = parse_go_duration(str(body.get("ttl", "")))
        except ValueError as exc:
            return error(400, "malformed entity specification", str(exc))
        if not known:
            return error(500, "failed to create client certificate", "something went wrong with the request")
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
        """v0.14.0 (certs/service.go ViewCert): an unknown serial is ``repoerr.ErrNotFound``, which
        certs' encodeError does not map (500); ``RevokeCert`` removes a revoked cert's row, so
        viewing it gives the same."""
        cert = self.state.certs.get(request.match_info["certID"])
        if cert is None and self.state.mainflux:
            return error(404, "entity not found")
        if cert is None or (cert.revoked and not self.state.mainflux):
            return error(500, "entity not found", "entity not found")
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
        """v0.14.0 (certs/service.go RevokeCert): the thing is fetched first (an unknown one: 500, as
        for issue), then its certs are revoked; with none the loop does not run and the answer is
        the zero ``time.Time`` (certs/api/responses.go revokeCertsRes)."""
        thing_id = request.match_info["certID"]  # the code treats it as a thing id (facts §4.3)
        mine = [c for c in self.state.certs.values() if c.thing_id == thing_id and not c.revoked]
        if not self.state.mainflux and thing_id not in self.state.things:
            return error(500, _NO_PERMISSION, "failed to revoke certificate")
        if not mine and self.state.mainflux:
            return error(404, "entity not found")
        for cert in mine:
            cert.revoked = True
            self.state.effect("cert.revoke", thing_id, serial=cert.serial)
        when = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if mine else _ZERO_TIME
        return web.json_response({"revocation_time": when})

    async def serials(self, request: web.Request) -> web.Response:
        thing_id = request.match_info["thingID"]
        if not self.state.mainflux:
            return self._serials_v014(request, thing_id)
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", "10"))
        mine = [c for c in self.state.certs.values() if c.thing_id == thing_id and not c.revoked]
        page = [
            {"thing_id": c.thing_id, "cert_serial": c.serial, "expiration": c.expiration}
            for c in mine[offset : offset + limit]
        ]
        return web.json_response({"total": len(mine), "offset": offset, "limit": limit, "certs": page})

    def _serials_v014(self, request: web.Request, thing_id: str) -> web.Response:
        """v0.14.0 (certs/api/transport.go decodeListCerts, requests.go listReq, endpoint.go
        listSerials): a query that is no unsigned number is ``ErrInvalidQueryParams``, which certs'
        encodeError does not map (500); ``limit > 100`` is ``ErrLimitSize`` (400); each item is a
        ``certsRes`` with only ``cert_serial`` filled (the rest empty or the zero time)."""
        try:
            offset, limit = (int(request.query.get(k, d)) for k, d in (("offset", "0"), ("limit", "10")))
        except ValueError:
            offset = limit = -1
        if min(offset, limit) < 0:
            return error(500, "invalid query parameters", "something went wrong with the request")
        if limit > 100:
            return error(400, "limit exceeds maximum allowed size", "something went wrong with the request")
        mine = [c for c in self.state.certs.values() if c.thing_id == thing_id and not c.revoked]
        empty = {"thing_id": "", "client_cert": "", "client_key": "", "expiration": _ZERO_TIME}
        page = [empty | {"cert_serial": c.serial} for c in mine[offset : offset + limit]]
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
