"""The simulated certs service and http adapter."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from aiohttp import web

from reactor.durations import parse_go_duration
from reactor.supermq.simulator.api_common import _Api, _body, error
from reactor.supermq.simulator.api_things import _NO_PERMISSION

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
        header = request.headers.get("Authorization", "")
        if self.state.mainflux:
            if channel_id not in self.state.channels:
                return error(404, "entity not found")
        elif not header:  # v0.14.0 serves 8008 through mproxy v0.4.2 (pkg/http/http.go Handler)
            return error(502, "missing authentication")
        key = header[6:] if header.startswith("Thing ") else header
        thing = next((t for t in self.state.things.values() if t.key == key), None)
        if thing is None or (thing.id, channel_id) not in self.state.connections:
            # mproxy answers any Publish error (unknown channel, wrong key, not connected) 400
            status = 401 if self.state.mainflux else 400
            return error(status, "failed to perform authorization over the entity")
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
