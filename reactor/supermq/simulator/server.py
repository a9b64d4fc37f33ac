"""The SuperMQ simulator: real HTTP servers on loopback, one per service, with in-memory state,
OpenAPI checks on every exchange, and faults on demand (errors, 429, latency, hangs, outages,
restarts). Used by ``reactor simulate-supermq``, ``reactor demo`` and the tests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from reactor.settings import SuperMQSettings
from reactor.supermq.simulator.contract import Contract, services_of
from reactor.supermq.simulator.faults import Faults, Planned
from reactor.supermq.simulator.handlers import Handler, error, routes
from reactor.supermq.simulator.state import State

#: SuperMQ's default ports (Magistrala v0.14.0 docker/.env; clients and channels: HEAD's).
DEFAULT_PORTS = {
    "users": 9002,
    "things": 9000,
    "bootstrap": 9013,
    "certs": 9019,
    "http": 8008,
    "clients": 9006,
    "channels": 9005,
}


@dataclass(frozen=True)
class Exchange:
    """One request the simulator answered (for retry-timing and effect assertions)."""

    at: float
    service: str
    method: str
    path: str
    status: int


class Simulator:
    """Start with ``await sim.start()``; ``sim.settings()`` gives the reactor's ``[supermq]`` section."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
        validate: bool = True,
        state: State | None = None,
        contract: Contract | None = None,
        profile: str = "things",
    ) -> None:
        self.host = host
        self.state = state or State(profile=profile)
        self.services = services_of(self.state.profile)
        self.ports = dict(ports) if ports is not None else dict.fromkeys(self.services, 0)
        self.faults = Faults()
        default = Contract(profile=self.state.profile) if validate else None
        self.contract = contract if contract is not None else default
        self.exchanges: list[Exchange] = []
        self._runners: dict[str, web.AppRunner] = {}

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        for service in self.services:
            app = web.Application(middlewares=[self._middleware(service)])
            app.add_routes(routes(service, self.state))
            app.router.add_get("/health", _health(service, self.state.profile))
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.ports[service], reuse_address=True)
            await site.start()
            server = site._server  # aiohttp exposes the bound port only here
            assert server is not None
            self.ports[service] = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            self._runners[service] = runner

    async def stop(self) -> None:
        for runner in self._runners.values():
            await runner.cleanup()
        self._runners.clear()

    async def restart(self, down_s: float = 0.0) -> None:
        """Stop every service (connections drop), stay down ``down_s``, start again on the same ports."""
        await self.stop()
        await asyncio.sleep(down_s)
        await self.start()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- addresses ----------------------------------------------------------------------------

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"

    def settings(self, **overrides: Any) -> SuperMQSettings:
        """The ``[supermq]`` settings that point the reactor here, logging in as the simulator's admin."""
        values: dict[str, Any] = {f"{s}_url": self.url(s) for s in self.services} | {
            "identity": self.state.identity,
            "secret": self.state.secret,
            "profile": self.state.profile,
        }
        if self.state.profile == "clients":
            values["domain_id"] = self.state.domain_id
        return SuperMQSettings(**(values | overrides))

    # ---- the middleware: faults, contract, journal --------------------------------------------

    def _middleware(self, service: str) -> Any:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            response = await self._handle(service, request, handler)
            self.exchanges.append(
                Exchange(time.monotonic(), service, request.method, request.path, response.status)
            )
            return response

        return middleware

    async def _handle(self, service: str, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        plan = self.faults.take(request.path, request.method)
        if plan is not None:
            return await _fault(plan)
        body = await request.read()
        query = list(request.query.items())
        req_headers = CIMultiDict(request.headers)
        route = request.match_info.route.resource
        template = route.canonical if route is not None else request.path
        if self.contract is not None and request.path != "/health":
            problem = self.contract.check(
                service, request.method, request.path, template, query, req_headers, body
            )
            if problem is not None:
                return error(400, "malformed entity specification", f"openapi: {problem}")
        response: web.StreamResponse
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = web.Response(status=exc.status, text=exc.text, content_type="application/json")
        if self.contract is not None and request.path != "/health" and isinstance(response, web.Response):
            resp_body = response.body if isinstance(response.body, bytes) else b""
            self.contract.check_response(
                service,
                request.method,
                request.path,
                template,
                query,
                req_headers,
                body,
                response.status,
                CIMultiDict(response.headers),
                resp_body,
            )
        return response


async def _fault(plan: Planned) -> web.Response:
    if plan.hang_s:
        await asyncio.sleep(plan.hang_s)
        return error(504, "gateway timeout")
    response = error(plan.status, "injected fault", f"simulated HTTP {plan.status}")
    if plan.retry_after_s is not None:
        response.headers["Retry-After"] = f"{plan.retry_after_s:g}"
    return response


#: What /health reports per profile: Mainflux 59bcb72f52c0 says 0.13.0 (its last tag); Magistrala
#: v0.14.0 builds ``version`` from ``git describe --abbrev=0 --tags`` (Makefile), so with its "v";
#: SuperMQ HEAD 791e084 is 24 commits past its last tag, v0.19.1.
_VERSIONS = {"mainflux": "0.13.0", "things": "v0.14.0", "clients": "v0.19.1"}
#: health.go at v0.14.0 (and at HEAD) answers ``application/health+json``.
_HEALTH_TYPES = {
    "mainflux": "application/json",
    "things": "application/health+json",
    "clients": "application/health+json",
}


def _health(service: str, profile: str) -> Handler:
    body = {  # health.go: what every service of both eras answers
        "status": "pass",
        "version": _VERSIONS[profile],
        "commit": "simulator",
        "description": f"{service} service",
        "build_time": "2023-10-05_10:00:00",
        "instance_id": str(uuid.uuid4()),
    }

    async def health(_: web.Request) -> web.Response:
        return web.json_response(body, content_type=_HEALTH_TYPES[profile])

    return health
