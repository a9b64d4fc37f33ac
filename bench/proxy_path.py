"""The proxy path: SuperMQ requests at 64 in flight through a local forward proxy, the reactor's
transport against httpx's, and direct beside them (``python -m bench.proxy_path``; not part of
``make bench``).

The origin is bench/fastserver.py (aiohttp, its own process); the proxy is tests/proxy.py (a
tiny asyncio forward proxy, its own process), so the client's process runs the client only.
``https`` goes through CONNECT to a TLS origin (the same server behind a TLS listener, with a
certificate made now). Each figure is the best of ``REPEATS`` runs taken in turns, with the
client process's CPU time per request (the least of the runs): on a shared machine the rate
drifts, the CPU cost much less, and the proxy's own speed bounds the rate, not the cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from bench.common import ROOT
from bench.fastserver import ok
from reactor.settings import SuperMQSettings
from reactor.supermq.http import Http, build_http
from tests.certs.corpus import issue
from tests.servers import free_port

REQUESTS = 4000
CONCURRENCY = 64
REPEATS = 3


@contextlib.asynccontextmanager
async def _process(*args: str, port: int) -> AsyncIterator[int]:
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT)  # noqa: ASYNC220
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


async def _rate(http: Http, url: str, requests: int = REQUESTS) -> float:
    slots = asyncio.Semaphore(CONCURRENCY)
    target = httpx.URL(url)

    async def one() -> None:
        async with slots:
            answer = await http.request(
                "PUT", target, content=b'{"state": 1}', headers={"Authorization": "b"}
            )
            assert answer.status_code == 200, answer.status_code

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(requests)))
    _CPU.append((time.process_time() - cpu) / requests)
    return requests / (time.perf_counter() - started)


_CPU: list[float] = []  # the client process's CPU seconds per request, run by run


def _tls_files(tmp: Path) -> tuple[Path, Path, Path]:
    ca = issue("bench CA", ca=True)
    leaf = issue("localhost", ca, eku=[ExtendedKeyUsageOID.SERVER_AUTH], san="localhost")
    (tmp / "ca.pem").write_text(ca.pem)
    (tmp / "server.pem").write_text(leaf.pem)
    key = leaf.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp / "server.key").write_bytes(key)
    return tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"


def serve_tls(port: int, cert: str, key: str) -> None:
    """bench/fastserver.py's routes behind TLS (``python -m bench.proxy_path serve PORT CERT KEY``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()
    app.add_routes([web.put("/things/state/{id}", ok)])
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, ssl_context=context)


async def run() -> dict[str, str]:
    plain, tls_port, proxy = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        ca, cert, key = _tls_files(Path(tmp))
        async with (
            _process("bench.fastserver", str(plain), port=plain),
            _process("bench.proxy_path", "serve", str(tls_port), str(cert), str(key), port=tls_port),
            _process("tests.proxy", str(proxy), port=proxy),
        ):
            http_url = f"http://127.0.0.1:{plain}/things/state/x"
            https_url = f"https://localhost:{tls_port}/things/state/x"
            sides: dict[str, Callable[[], Awaitable[float]]] = {}
            for transport in ("http1", "httpx"):
                for via in ("", f"http://127.0.0.1:{proxy}"):
                    for url in (http_url, https_url):
                        name = f"{transport} {'through the proxy' if via else 'direct'} {url.split(':')[0]}"
                        settings = SuperMQSettings(
                            transport=transport,
                            proxy=via,
                            max_connections=CONCURRENCY,
                            ca_bundle=str(ca),
                        )
                        sides[name] = lambda s=settings, u=url: _measure(s, u)  # type: ignore[misc]
            rates: dict[str, list[float]] = {name: [] for name in sides}
            cpu: dict[str, list[float]] = {name: [] for name in sides}
            for _ in range(REPEATS):
                for name, side in sides.items():
                    rates[name].append(await side())
                    cpu[name].append(_CPU[-1])
    return {
        name: f"{max(r):,.0f} requests/s ({min(r):,.0f} to {max(r):,.0f} over {REPEATS} runs), "
        f"client CPU {min(cpu[name]) * 1e6:,.0f} us a request"
        for name, r in rates.items()
    }


async def _measure(settings: SuperMQSettings, url: str) -> float:
    http = build_http(settings)
    try:
        await _rate(http, url, 4 * CONCURRENCY)  # warm: connections (and tunnels) open
        return await _rate(http, url)
    finally:
        await http.aclose()


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve_tls(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        for line, figure in asyncio.run(run()).items():
            print(f"{line}: {figure}")
