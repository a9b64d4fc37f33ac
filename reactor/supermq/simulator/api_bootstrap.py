"""The simulated bootstrap service: ``/things/configs``, ``/things/state``, ``/things/bootstrap``."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from reactor.supermq.simulator.api_common import _Api, _body, error
from reactor.supermq.simulator.state import Config, State, Thing


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
