"""The cost of one ``http.request`` call on httpx's own transport (issue 17): httpcore asks which
async library runs it twice a call by ``import sniffio``; without sniffio installed that import
fails each time after searching every entry of ``sys.path`` (about 100 µs a call on 2 cores, a
quarter of the exchange). sniffio is a dependency of ours so that the import is a dictionary hit."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from aiohttp import web

from reactor.actions.base import ActionContext
from reactor.actions.http import HttpParams, HttpRequest
from reactor.events.decode import Decoder
from reactor.settings import load_settings
from reactor.supermq.client import SuperMQClient

EVENT = Decoder().decode(
    {"operation": "config.create", "thing_id": "t"}, source="t", stream="supermq.bootstrap", entry_id="1-0"
)


class _Lookups(importlib.abc.MetaPathFinder):
    """Counts the imports that go past ``sys.modules`` to the finders."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        self.names.append(fullname)
        return None


async def test_an_http_request_call_searches_the_import_path_for_nothing() -> None:
    async def hook(_: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = SuperMQClient(load_settings(None, supermq={"http_allowlist": ["127.0.0.1"]}).supermq)
    action = HttpRequest(lambda: client.external_http, ["127.0.0.1"])
    params = HttpParams(url=f"http://127.0.0.1:{port}/hook", json_body={"a": 1})
    ctx = ActionContext(event=EVENT, rule="r", action_id="hook", results={}, redelivered=False)
    lookups = _Lookups()
    try:
        assert (await action.run(params, ctx))["status"] == 204  # the first call sets things up
        sys.meta_path.insert(0, lookups)
        for _ in range(3):
            assert (await action.run(params, ctx))["status"] == 204
    finally:
        if lookups in sys.meta_path:
            sys.meta_path.remove(lookups)
        await client.aclose()
        await runner.cleanup()
    assert lookups.names == [], f"imports searched per call: {sorted(set(lookups.names))}"
