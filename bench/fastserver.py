"""A fast loopback stand-in for SuperMQ's bootstrap and users services, run in its own process.

It answers only what the HTTP benchmark sends, with no validation and no state, so that the
client side is what gets measured.
"""

from __future__ import annotations

import sys

from aiohttp import web

CONFIG = (
    b'{"thing_id":"t","thing_key":"k","channels":[],"external_id":"e","content":"{}","name":"n","state":0}'
)


async def token(_: web.Request) -> web.Response:
    return web.json_response(
        {"access_token": "bench", "refresh_token": "r", "access_type": "Bearer"}, status=201
    )


async def view(_: web.Request) -> web.Response:
    return web.Response(body=CONFIG, content_type="application/json")


async def ok(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=200)


def main(port: int) -> None:
    app = web.Application()
    app.add_routes(
        [
            web.post("/users/tokens/issue", token),
            web.get("/things/configs/{id}", view),
            web.put("/things/configs/{id}", ok),
            web.put("/things/state/{id}", ok),
        ]
    )
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
