"""The simulated SuperMQ HEAD certs service (absmach/certs 5d65013) and http adapter.

certs: api/http/{transport,requests,responses}.go and service.go at that commit. A certificate is
issued for any entity id (the service does not look the entity up) with the common name it is
given; it is revoked by its serial (``PATCH /{domainID}/certs/{id}/revoke``, 204) and stays listed
and viewable with ``revoked: true``. Serials are lower-case hex pairs joined by colons.
http adapter: apidocs/openapi/http.yaml (``/m/{domainPrefix}/c/{channelPrefix}``; the adapter's
code is no longer in absmach/supermq at HEAD, so the spec is all there is to follow).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from reactor.durations import parse_go_duration
from reactor.supermq.simulator.api_common import Handler, _Api, _body, error
from reactor.supermq.simulator.api_head import _HeadApi
from reactor.supermq.simulator.state import Cert


def _view(cert: Cert, *, key: bool = False) -> dict[str, Any]:
    """issueCertRes / viewCertRes: the key only in the answer to the issue."""
    view: dict[str, Any] = {
        "serial_number": cert.serial,
        "certificate": cert.pem,
        "revoked": cert.revoked,
        "expiry_time": cert.expiration,
        "entity_id": cert.thing_id,
    }
    return view | ({"key": cert.key_pem} if key else {})


class HeadCertsApi(_HeadApi):
    """``/{domainID}/certs/issue/{entityID}``, ``/{domainID}/certs[/{id}[/revoke]]``."""

    async def issue(self, request: web.Request) -> web.Response:
        """requests.go issueCertReq.validate: ``options.common_name`` is required (malformed: 400)."""
        body = await _body(request)
        entity_id = request.match_info["entityID"]
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        assert isinstance(options, dict)
        common_name = str(options.get("common_name") or "")
        if not common_name:
            return error(400, "malformed entity specification", "missing common name")
        try:
            ttl_s = parse_go_duration(str(body.get("ttl") or "8760h"))
        except ValueError as exc:
            return error(400, "malformed entity specification", str(exc))
        if entity_id not in self.state.things:  # the simulator's CA needs the thing for the SAN
            self.state.add_thing(thing_id=entity_id)
        cert = self.state.issue_cert(entity_id, ttl_s, common_name=common_name)
        self.state.effect("cert.issue", entity_id, serial=cert.serial)
        return web.json_response(_view(cert, key=True), status=201)

    async def view(self, request: web.Request) -> web.Response:
        cert = self.state.certs.get(request.match_info["id"])
        if cert is None:
            return error(404, "entity not found", "failed to view certificate")
        return web.json_response(_view(cert))

    async def list_certs(self, request: web.Request) -> web.Response:
        """service.go ListCerts with ``entity_id``: the entity's serials, revoked ones included."""
        try:
            offset = int(request.query.get("offset", "0"))
            limit = int(request.query.get("limit", "10"))
        except ValueError:
            return error(400, "invalid query parameters")
        entity = request.query.get("entity_id", "")
        mine = [c for c in self.state.certs.values() if not entity or c.thing_id == entity]
        page = [_view(c) for c in mine[offset : offset + limit]]
        answer: dict[str, Any] = {"total": len(mine), "offset": offset, "limit": limit}
        return web.json_response(answer | ({"certificates": page} if page else {}))

    async def revoke(self, request: web.Request) -> web.Response:
        """service.go RevokeBySerial: exactly that certificate; revokeCertRes is 204."""
        cert = self.state.certs.get(request.match_info["id"])
        if cert is None:
            return error(422, "failed to update entity", "certificate not found")
        cert.revoked = True
        self.state.effect("cert.revoke", cert.thing_id, serial=cert.serial)
        return web.Response(status=204)

    def routes(self) -> list[web.RouteDef]:
        auth = self._auth
        return [
            web.post("/{domainID}/certs/issue/{entityID}", auth(self.issue)),
            web.patch("/{domainID}/certs/{id}/revoke", auth(self.revoke)),
            web.get("/{domainID}/certs", auth(self.list_certs)),
            web.get("/{domainID}/certs/{id}", auth(self.view)),
        ]


class HeadHttpApi(_Api):
    """The http adapter: ``POST /m/{domainPrefix}/c/{channelPrefix}`` as a client
    (``Authorization: Client <secret>``), which must be connected with type publish."""

    async def publish(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Client "):
            return error(401, "missing or invalid credentials provided")
        channel_id = request.match_info["channelPrefix"]
        thing = next((t for t in self.state.things.values() if t.key == header[7:]), None)
        if thing is None:
            return error(401, "missing or invalid credentials provided")
        if (thing.id, channel_id, "publish") not in self.state.typed_connections:
            return error(403, "failed to perform authorization over the entity")
        payload = await request.read()
        message = {"channel": channel_id, "subtopic": "", "publisher": thing.id, "payload": payload}
        self.state.messages.append(message | {"at": time.time()})
        self.state.effect("message.publish", thing.id, channel=channel_id)
        return web.Response(status=202)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/m/{domainPrefix}/c/{channelPrefix}", in_domain_prefix(self, self.publish))]


def in_domain_prefix(api: _Api, handler: Handler) -> Handler:
    """The domain in the path by its id (a route name is the other form the spec allows)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        if request.match_info["domainPrefix"] != api.state.domain_id:
            return error(404, "entity not found", "unknown domain")
        return await handler(request)

    return wrapped
