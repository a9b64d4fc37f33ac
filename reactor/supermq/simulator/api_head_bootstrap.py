"""The simulated SuperMQ HEAD bootstrap service: ``/{domainID}/clients/configs...``,
``/{domainID}/clients/state/{clientID}`` and the device's ``/clients/bootstrap/{externalID}``.

Sources (absmach/supermq 791e084): bootstrap/api/{transport,responses,endpoint}.go,
bootstrap/reader.go (the device's answer), bootstrap/service.go (ChangeState, UpdateConnections).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from reactor.supermq.simulator.api_common import _body, error, user_auth
from reactor.supermq.simulator.api_head import CONN_TYPES, _HeadApi
from reactor.supermq.simulator.state import Channel, Config


def _not_found() -> web.HTTPNotFound:
    return web.HTTPNotFound(
        text=json.dumps({"error": "entity not found", "message": "failed to retrieve config"}),
        content_type="application/json",
    )


class HeadBootstrapApi(_HeadApi):
    """Bootstrap configs of the simulator's one domain."""

    def _config(self, request: web.Request) -> Config:
        config = self.state.configs.get(request.match_info["configID"])
        if config is None:
            raise _not_found()
        return config

    def _channel(self, channel: Channel) -> dict[str, Any]:
        """bootstrap/api/responses.go channelRes: ``name`` and ``metadata`` are ``omitempty``."""
        view: dict[str, Any] = {"id": channel.id}
        return (
            view
            | ({"name": channel.name} if channel.name else {})
            | ({"metadata": channel.metadata} if channel.metadata else {})
        )

    def _channels(self, config: Config) -> list[dict[str, Any]]:
        known = self.state.channels | self.state.bootstrap_channels
        return [self._channel(known[c]) for c in config.channels if c in known]

    def view_of(self, config: Config) -> dict[str, Any]:
        """bootstrap/api/responses.go viewRes: every field ``omitempty`` but ``external_id`` and
        ``state`` (an integer: bootstrap.State has no MarshalJSON); no certificates in a view."""
        thing = self.state.things.get(config.thing_id)
        view: dict[str, Any] = {
            "client_id": config.thing_id,
            "client_secret": thing.key if thing else "",
            "channels": self._channels(config),
            "external_id": config.external_id,
            "external_key": config.external_key,
            "content": config.content,
            "name": config.name,
            "state": config.state,
        }
        return {k: v for k, v in view.items() if k in ("external_id", "state") or v not in ("", [])}

    async def add(self, request: web.Request) -> web.Response:
        """bootstrap/api ``POST /{domainID}/clients/configs``: addReq (``client_id``, not
        ``thing_id``) validated first (requests.go: no external id ``ErrMissingID`` 400, no key
        ``ErrBearerKey`` 401, no channels ``ErrEmptyList`` 400); then service.go Add: a channel or
        client the platform does not know fails as a plain wrapped error, which EncodeError maps to
        no case (500); a client or external id with a config already is ``ErrAddBootstrap``, a
        service error (422). 201, ``Location: /clients/configs/<id>``, no body (configRes)."""
        body = await _body(request)
        refused = self._add_refused(body)
        if refused is not None:
            return refused
        channels = [str(c) for c in body["channels"]]
        client_id = str(body.get("client_id", ""))
        thing = self.state.things.get(client_id) if client_id else self.state.add_thing()
        if thing is None:
            return error(500, "failed to find client", "unexpected server-side error")
        external_ids = {c.external_id for c in self.state.configs.values()}
        if thing.id in self.state.configs or body["external_id"] in external_ids:
            return error(422, "entity already exists", "failed to add bootstrap configuration")
        config = self.state.add_config(
            thing,
            str(body["external_id"]),
            str(body["external_key"]),
            list(channels),
            str(body.get("content", "")),
            str(body.get("name", "")),
        )
        config.client_cert = str(body.get("client_cert", ""))
        config.client_key = str(body.get("client_key", ""))
        config.ca_cert = str(body.get("ca_cert", ""))
        self.state.effect("config.create", thing.id)
        return web.Response(status=201, headers={"Location": f"/clients/configs/{thing.id}"})

    def _add_refused(self, body: dict[str, Any]) -> web.Response | None:
        """addReq.validate, then Add's channel check (see ``add``)."""
        why = "malformed request body"
        channels = body.get("channels")
        if not body.get("external_id"):
            return error(400, "missing entity id", why)
        if not body.get("external_key"):
            return error(401, "missing or invalid bearer entity key", why)
        if (
            not isinstance(channels, list)
            or not channels
            or not all(isinstance(c, str) and c for c in channels)
        ):
            return error(400, "empty list provided", why)
        if not all(self.state.known_to_bootstrap(c) for c in channels):
            return error(500, "failed to check channels connections", "unexpected server-side error")
        return None

    async def list_configs(self, request: web.Request) -> web.Response:
        """bootstrap/middleware/authorization.go List authorizes nothing: another domain's listing
        is that domain's configs (none here), not a refusal."""
        try:
            offset = int(request.query.get("offset", "0"))
            limit = int(request.query.get("limit", "10"))
        except ValueError:
            return error(400, "malformed query parameters")
        if limit > 100 or limit < 0 or offset < 0:
            return error(400, "malformed query parameters", "limit must be between 1 and 100")
        configs = sorted(self.state.configs.values(), key=lambda c: c.thing_id)
        if request.match_info["domainID"] != self.state.domain_id:
            configs = []
        if "state" in request.query:
            configs = [c for c in configs if str(c.state) == request.query["state"]]
        if "name" in request.query:
            configs = [c for c in configs if request.query["name"].lower() in c.name.lower()]
        if (
            "external_id" in request.query
        ):  # transport.go fullMatch: state, external_id, client_id, client_key
            configs = [c for c in configs if c.external_id == request.query["external_id"]]
        if "client_id" in request.query:
            configs = [c for c in configs if c.thing_id == request.query["client_id"]]
        page = [self.view_of(c) for c in configs[offset : offset + limit]]
        for view in page:
            view.pop("channels", None)  # bootstrap/postgres/configs.go RetrieveAll selects no channels
        return web.json_response({"total": len(configs), "offset": offset, "limit": limit, "configs": page})

    async def view(self, request: web.Request) -> web.Response:
        return web.json_response(self.view_of(self._config(request)))

    async def update(self, request: web.Request) -> web.Response:
        body = await _body(request)
        config = self._config(request)
        config.name, config.content = str(body.get("name", "")), str(body.get("content", ""))
        self.state.effect("config.update", config.thing_id, content=config.content)
        return web.Response(status=200)

    async def remove(self, request: web.Request) -> web.Response:
        config = self.state.configs.pop(request.match_info["configID"], None)
        if config is not None:
            self.state.effect("config.remove", config.thing_id)
        return web.Response(status=204)

    async def certs(self, request: web.Request) -> web.Response:
        """updateConfigRes: ``client_id``, ``ca_cert``, ``client_cert``, ``client_key``, each
        ``omitempty``."""
        body = await _body(request)
        config = self._config(request)
        config.client_cert = str(body.get("client_cert", ""))
        config.client_key = str(body.get("client_key", ""))
        config.ca_cert = str(body.get("ca_cert", ""))
        self.state.effect("config.certs", config.thing_id, client_cert=config.client_cert)
        answer = {
            "client_id": config.thing_id,
            "ca_cert": config.ca_cert,
            "client_cert": config.client_cert,
            "client_key": config.client_key,
        }
        return web.json_response({k: v for k, v in answer.items() if v})

    async def connections(self, request: web.Request) -> web.Response:
        """bootstrap/service.go UpdateConnections: a channel the channels service does not know
        fails ``connectionChannels`` (ErrMalformedEntity: 400); an active config disconnects the
        removed channels and connects the added ones."""
        body = await _body(request)
        config = self._config(request)
        channels = [str(c) for c in body.get("channels") or []]
        if not all(self.state.known_to_bootstrap(c) for c in channels):
            return error(400, "malformed entity specification", "failed to update connections")
        if config.state == 1:
            for gone in [c for c in config.channels if c not in channels]:
                self._link(config.thing_id, gone, connect=False)
            for new in [c for c in channels if c not in config.channels]:
                self._link(config.thing_id, new, connect=True)
        config.channels = channels
        self.state.keep_channels(channels)
        self.state.effect("config.connections", config.thing_id, channels=channels)
        return web.Response(status=200)

    def _link(self, client_id: str, channel_id: str, *, connect: bool) -> None:
        """bootstrap's ``sdk.ConnectClients`` / ``DisconnectClients`` with types Publish and
        Subscribe; a conflict (connected already) and a not-found are skipped (ChangeState)."""
        for kind in CONN_TYPES:
            if connect:
                self.state.typed_connections.add((client_id, channel_id, kind))
            else:
                self.state.typed_connections.discard((client_id, channel_id, kind))
        (self.state.connect if connect else self.state.disconnect)(client_id, channel_id)

    async def change_state(self, request: web.Request) -> web.Response:
        """bootstrap/service.go ChangeState: the same state is a no-op; stateRes.Code() is 200."""
        body = await _body(request)
        config = self.state.configs.get(request.match_info["configID"])
        if config is None:
            raise _not_found()
        new = body.get("state")
        if new not in (0, 1) or isinstance(new, bool):
            return error(400, "malformed entity specification", "invalid state")
        if new != config.state:
            for channel in config.channels:
                self._link(config.thing_id, channel, connect=new == 1)
            config.state = new
            self.state.effect("config.state", config.thing_id, state=new)
        return web.Response(status=200)

    async def bootstrap(self, request: web.Request) -> web.Response:
        """bootstrap/reader.go bootstrapRes: ``client_id``, ``client_secret`` and ``channels``
        always, the content and certificates when set; ``Authorization: Client <external key>``."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Client "):
            return error(401, "missing or invalid credentials provided")
        external_id = request.match_info["externalId"]
        config = next((c for c in self.state.configs.values() if c.external_id == external_id), None)
        if config is None:
            return error(404, "entity not found")
        if header[7:] != config.external_key:
            return error(403, "failed to perform authorization over the entity")
        thing = self.state.things.get(config.thing_id)
        answer: dict[str, Any] = {
            "client_id": config.thing_id,
            "client_secret": thing.key if thing else "",
            "channels": self._channels(config),
        }
        extra = {
            "content": config.content,
            "client_cert": config.client_cert,
            "client_key": config.client_key,
            "ca_cert": config.ca_cert,
        }
        return web.json_response(answer | {k: v for k, v in extra.items() if v})

    def routes(self) -> list[web.RouteDef]:
        auth = self._auth
        base = "/{domainID}/clients"
        return [
            web.post(f"{base}/configs", auth(self.add)),
            web.get(f"{base}/configs", user_auth(self.state, self.list_configs)),
            web.patch(f"{base}/configs/certs/{{configID}}", auth(self.certs)),
            web.put(f"{base}/configs/connections/{{configID}}", auth(self.connections)),
            web.get(f"{base}/configs/{{configID}}", auth(self.view)),
            web.put(f"{base}/configs/{{configID}}", auth(self.update)),
            web.delete(f"{base}/configs/{{configID}}", auth(self.remove)),
            web.put(f"{base}/state/{{configID}}", auth(self.change_state)),
            web.get("/clients/bootstrap/{externalId}", self.bootstrap),
        ]
