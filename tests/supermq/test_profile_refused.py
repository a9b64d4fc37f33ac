"""A platform of an era the reactor does not speak stops ``reactor run`` with one line, exit 2."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.conftest import reactor_cli
from tests.servers import free_port


async def test_run_against_supermq_v016_is_refused_in_one_line() -> None:
    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "pass", "version": "0.16.0", "description": "bootstrap service"})

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        env = {"REACTOR_SUPERMQ__BOOTSTRAP_URL": f"http://127.0.0.1:{port}", "REACTOR_OPS__LISTEN": ""}
        result = await asyncio.to_thread(reactor_cli, "run", env=env)
    finally:
        await runner.cleanup()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('reactor: supermq.profile = "auto"')
    assert "v0.16-v0.18 is not supported" in last
