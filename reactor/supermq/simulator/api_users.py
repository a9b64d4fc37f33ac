"""The simulated users service: ``/users/tokens/*``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from reactor.supermq.simulator.api_common import _Api, _body, error


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
