"""What every simulated service shares: the error body, JSON bodies, the user token check."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

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
