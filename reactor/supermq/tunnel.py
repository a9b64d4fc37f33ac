"""The reactor's transport through an HTTP(S) forward proxy (``supermq.proxy``, or the
environment's: proxies.py).

- ``http://`` targets: a kept-alive connection to the proxy, each request in absolute form
  (``GET http://host:port/path HTTP/1.1``) with ``Proxy-Authorization: Basic`` from the proxy URL's
  user and password (connection.py writes it).
- ``https://`` targets: ``CONNECT host:port`` to the proxy, its answer read here (a 2xx, the whole
  answer, interim ones included, bounded at ``MAX_HEAD`` like any head, nothing after it), then TLS
  to the origin over the tunnel, verified exactly as a direct connection is (the origin's name, the
  same CA trust).
- an ``https://`` proxy: TLS to the proxy first (verified with the same trust), then as above
  (TLS inside TLS, which asyncio supports from Python 3.11).

Anything that goes wrong before the request itself is sent (the proxy refusing CONNECT, a
malformed or oversized answer to it, bytes past it) is ``httpx.ProxyError``: not sent, safe to
retry. The proxy's credentials are never in a message: ``Proxy.shown`` is its URL without them.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
import httpx

from reactor.supermq.connection import MAX_HEAD, Connection, Origin


@dataclass(frozen=True)
class Proxy:
    """A forward proxy: where it is, its ``Proxy-Authorization`` header line (b"" without
    credentials), and its URL as it may be shown (no user, no password)."""

    scheme: str
    host: str
    port: int
    authorization: bytes
    shown: str

    def __repr__(self) -> str:  # never the credentials, whatever prints it
        return f"Proxy({self.shown!r})"


def parse_proxy(url: str) -> Proxy:
    """A proxy URL (``http://[user:password@]host[:port]``, or ``https://``) as a ``Proxy``."""
    parsed = httpx.URL(url if "://" in url else "http://" + url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("only http:// or https:// proxies are supported (not SOCKS)")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    authorization = b""
    if parsed.username or parsed.password:
        token = base64.b64encode(f"{parsed.username}:{parsed.password}".encode())
        authorization = b"Proxy-Authorization: Basic %s\r\n" % token
    return Proxy(
        parsed.scheme, parsed.host, port, authorization, f"{parsed.scheme}://{_authority(parsed.host, port)}"
    )


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_request(host: str, port: int, proxy: Proxy) -> bytes:
    """The CONNECT request for a tunnel to ``host:port``."""
    authority = _authority(host, port).encode("ascii" if host.isascii() else "idna")
    return b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (authority, authority, proxy.authorization)


class _Head:
    """llhttp's callbacks for one answer head."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self.complete = True


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


class ConnectAnswer:
    """The proxy's answer to CONNECT, read as it comes (``feed``). Interim (1xx) heads are parsed
    once and dropped; the whole answer, interim heads included, is at most ``MAX_HEAD`` bytes, so
    that a proxy sending interim answers without end is refused after 16 KiB, not buffered (and
    parsed again from its first byte on every read) until the connect timeout."""

    def __init__(self) -> None:
        self._pending = b""  # past the heads parsed so far
        self._consumed = 0  # the interim heads' bytes, dropped

    def feed(self, data: bytes) -> Answer | None:
        """The final answer once complete: (status, headers, the bytes after its head), else None.
        A malformed head, or an answer over ``MAX_HEAD``, is ``httpx.ProxyError``. (A 2xx answer
        to CONNECT has no body whatever its headers say, RFC 9110 9.3.6: only the head is read.)"""
        self._pending += data
        while True:
            end = self._pending.find(b"\r\n\r\n")
            if self._consumed + (len(self._pending) if end < 0 else end + 4) > MAX_HEAD:
                raise httpx.ProxyError(
                    f"the proxy's answer to CONNECT (interim answers included) is over {MAX_HEAD} bytes"
                )
            if end < 0:
                return None
            status, headers = _parse_head(self._pending[: end + 4])
            self._consumed += end + 4
            self._pending = self._pending[end + 4 :]
            if status >= 200 or status == 101:
                return status, headers, self._pending


def _parse_head(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    head = _Head()
    parser = httptools.HttpResponseParser(head)
    try:
        parser.feed_data(raw)
    except httptools.HttpParserError as exc:
        # past the head (llhttp pauses on a 101 or an Upgrade, or frets over a body): a CONNECT
        # answer has no body, the head is what counts
        if not head.complete:
            raise httpx.ProxyError(f"malformed answer to CONNECT from the proxy: {exc}") from None
    if not head.complete:
        raise httpx.ProxyError("malformed answer to CONNECT from the proxy")
    return parser.get_status_code(), head.headers


class _Tunnel(asyncio.Protocol):
    """Sends CONNECT and reads the proxy's answer; ``established`` is done when the tunnel is."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request: bytes, target: str) -> None:
        self._request = request
        self._target = target
        self._answer = ConnectAnswer()
        self._transport: asyncio.Transport | None = None
        self.established: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if self.established.done():  # past the answer, before TLS starts: nobody asked
            if self._transport is not None:
                self._transport.close()  # the TLS handshake then fails: ConnectError
            return
        try:
            answer = self._answer.feed(data)
        except httpx.ProxyError as exc:
            self.established.set_exception(exc)
            return
        if answer is None:
            return
        status, _, rest = answer
        if not 200 <= status < 300:
            self.established.set_exception(
                httpx.ProxyError(f"the proxy answered CONNECT {self._target} with HTTP {status}")
            )
        elif rest:
            self.established.set_exception(
                httpx.ProxyError("the proxy sent bytes past its answer to CONNECT")
            )
        else:
            self.established.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.established.done():
            self.established.set_exception(
                httpx.ProxyError(f"the proxy closed the connection before answering CONNECT {self._target}")
            )


async def open_via(
    proxy: Proxy,
    origin: Origin,
    context: ssl.SSLContext,
    make: Callable[[], Connection],
    handshake_s: float | None,
) -> Connection:
    """A connection to ``origin`` through ``proxy`` (the caller bounds the whole of it)."""
    loop = asyncio.get_running_loop()
    scheme, host, port = origin
    to_proxy: dict[str, Any] = {}
    if proxy.scheme == "https":
        to_proxy = {"ssl": context, "server_hostname": proxy.host, "ssl_handshake_timeout": handshake_s}
    if scheme == "http":
        _, conn = await loop.create_connection(make, proxy.host, proxy.port, **to_proxy)
        conn.forward = proxy.authorization
        return conn
    target = _authority(host, port)
    transport, tunnel = await loop.create_connection(
        lambda: _Tunnel(loop, connect_request(host, port, proxy), target), proxy.host, proxy.port, **to_proxy
    )
    try:
        await tunnel.established
        conn = make()
        tls = await loop.start_tls(
            transport, conn, context, server_hostname=host, ssl_handshake_timeout=handshake_s
        )
    except BaseException:
        transport.close()
        raise
    assert tls is not None
    conn.connection_made(tls)
    return conn
