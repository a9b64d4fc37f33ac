"""The operator's HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz`` (alive), ``/readyz``
(connected to the event store, rules loaded)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from reactor.ops.metrics import Metrics

ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]


class OpsServer:
    """Serves the endpoints on ``host:port`` until stopped."""

    def __init__(self, metrics: Metrics, ready: ReadyCheck, host: str, port: int) -> None:
        self._metrics = metrics
        self._ready = ready
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/metrics", self._metrics_page),
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        if server is not None and self.port == 0:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics_page(self, _: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.render(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type": "text/plain; version=0.0.4"},
        )

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        checks = await self._ready()
        ready = all(checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)
