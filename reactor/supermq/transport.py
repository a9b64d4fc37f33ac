"""HTTP/1.1 for the reactor's calls: an httpx transport on asyncio protocols, parsed by llhttp.

Why a transport of our own: one action per event is one request, so a request's client-side cost
is the reactor's cost (the measurements that chose it: bench/README.md, "Profiling history").
The parts that are easy to get wrong are not ours: llhttp (Node.js's parser, through
``httptools``) reads the responses, asyncio does sockets and TLS.

What it does:
- a keep-alive pool per origin, at most ``max_connections`` open in all; a caller waits for a slot
  at most the ``pool`` timeout (``httpx.PoolTimeout``); idle connections expire after
  ``keepalive_s``;
- TLS through ``ssl`` with verification on unless the caller passes ``verify=False``;
- Content-Length, chunked and close-delimited response bodies, 1xx interim answers skipped,
  HEAD answered without a body, ``Connection: close`` honoured, bodies over ``max_body`` refused;
- timeouts from the request's ``timeout`` extension (httpx's ``connect``/``read``/``write``/
  ``pool``): read is the longest silence while waiting for the answer;
- a reused connection that the server closed before answering (the keep-alive race) is retried
  once on a new connection, for idempotent methods only;
- CR or LF in a request header is refused before anything is sent (no header injection);
- request framing is the transport's alone: Content-Length for a body in memory, chunked for a
  streamed one; a caller's Content-Length that disagrees with the body, or a Transfer-Encoding
  other than chunked, is refused before anything is sent (no request smuggling);
- an answer's header block (and its trailers) at most ``connection.MAX_HEAD`` (16 KiB, as h11 and
  Node.js); trailers are not merged into the headers; a second answer to one request (bytes after
  a complete one) drops the connection, never read as the next exchange's answer;
- errors are httpx's own (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``WriteTimeout``,
  ``PoolTimeout``, ``RemoteProtocolError``, ``LocalProtocolError``, ``UnsupportedProtocol``,
  ``ProxyError``).

This module is the pool and the transport; ``connection.py`` is one connection (the wire format,
llhttp's callbacks, timeouts, flow control).

Through a forward proxy (``proxy=``: ``supermq.proxy``, or the environment's for the URLs it
covers, proxies.py): absolute-form requests for ``http://``, a CONNECT tunnel and TLS to the
origin for ``https://``, an ``https://`` proxy over TLS (tunnel.py).

What it does not: SOCKS, HTTP/2, upgrades, ``Expect: 100-continue``. ``supermq.transport =
"httpx"`` selects httpx's own transport for those (guarded against glued answers:
httpx_guard.py). (httpx-aiohttp, once the faster fallback behind a proxy, was tried and not
taken: it maps any ``aiohttp.ClientConnectionError``, a server hanging up after the request was
sent included, to ``ConnectTimeout``, which the reactor must read as "not sent": a POST would be
repeated.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx

from reactor.supermq.connection import Answer, Connection, Origin, StaleError
from reactor.supermq.tunnel import open_via, parse_proxy

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_DEFAULT_TIMEOUT = 10.0
#: The largest answer body read, on the wire and once decoded (32 MiB).
MAX_BODY = 32 * 1024 * 1024


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    value = request.extensions.get("timeout")
    if isinstance(value, dict):
        return value
    return {"connect": _DEFAULT_TIMEOUT, "read": _DEFAULT_TIMEOUT, "write": _DEFAULT_TIMEOUT, "pool": None}


class _Pool:
    """Connections per origin, at most ``limit`` open in all; callers queue for a slot."""

    def __init__(self, limit: int, keepalive_s: float) -> None:
        self._limit = limit
        self._keepalive_s = keepalive_s
        self._open = 0
        self._closed = False
        self._idle: dict[Origin, deque[Connection]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def open(self) -> int:
        return self._open

    async def acquire(
        self, origin: Origin, limit_s: float | None, request: httpx.Request, *, fresh: bool = False
    ) -> Connection | None:
        """An idle connection to ``origin`` (unless ``fresh``), or None with a slot reserved for a
        new one. (``asyncio.get_running_loop()`` only on the slow path: it costs a getpid()
        system call, which was 8% of a request here.)"""
        deadline = None
        while True:
            conn = None if fresh else self._take_idle(origin)
            if conn is not None:
                return conn
            if self._open < self._limit or self._evict_idle():
                self._open += 1
                return None
            loop = asyncio.get_running_loop()
            if deadline is None and limit_s is not None:
                deadline = loop.time() + limit_s
            await self._queue(loop, deadline, request)

    def _take_idle(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable and conn.idle_for() < self._keepalive_s:
                return conn
            self._drop(conn)
        return None

    def _evict_idle(self) -> bool:
        """Close an idle connection (another origin's, or any when a new one is wanted) to free
        its slot."""
        for idle in self._idle.values():
            if idle:
                self._drop(idle.popleft())
                return True
        return False

    async def _queue(
        self, loop: asyncio.AbstractEventLoop, deadline: float | None, request: httpx.Request
    ) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            if deadline is None:
                await waiter
            else:
                async with asyncio.timeout_at(deadline):
                    await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, then cancelled or timed out: the wake-up goes to the next in line
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout("no free connection in the pool in time", request=request) from None
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def release(self, conn: Connection) -> None:
        """Give a connection back after an exchange: kept if still good (and the pool open), else
        closed."""
        if conn.usable and not self._closed:
            conn.reused = True
            conn.idle_since = conn.now()
            self._idle.setdefault(conn.origin, deque()).append(conn)
        else:
            self._drop(conn)
        self._wake()

    def discard(self, conn: Connection | None) -> None:
        """Close a connection (or free a reserved slot when ``conn`` is None)."""
        if conn is None:
            self._open -= 1
        else:
            self._drop(conn)
        self._wake()

    def _drop(self, conn: Connection) -> None:
        conn.close()
        self._open -= 1

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Close the idle connections; those still in an exchange close when it ends."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                self._drop(idle.pop())


class Http1Transport(httpx.AsyncBaseTransport):
    """httpx's transport interface over a lean HTTP/1.1 client (see the module docstring)."""

    #: It bounds a whole exchange itself from the ``deadline`` timeout (http.py: no asyncio.timeout).
    checks_deadline = True

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 100,
        keepalive_s: float = 15.0,
        max_body: int = MAX_BODY,
        origins: frozenset[Origin] | None = None,
        proxy: str | None = None,
    ) -> None:
        """``origins``: the only (scheme, host, port) it may call (None: any); the daemon's is the
        configured SuperMQ services, ``http.request`` goes through httpx's own transport.
        ``proxy``: an ``http://`` or ``https://`` forward proxy every connection goes through
        (tunnel.py)."""
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else _ssl_context(verify)
        self._proxy = None if proxy is None else parse_proxy(proxy)
        self._origins = origins
        self._pool = _Pool(max_connections, keepalive_s)
        self._max_body = max_body

    @property
    def open_connections(self) -> int:
        return self._pool.open

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}", request=request)
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        if self._origins is not None and origin not in self._origins:
            raise httpx.UnsupportedProtocol(
                f"{url.scheme}://{url.host}:{origin[2]} is not a configured SuperMQ service", request=request
            )
        timeouts = _timeouts(request)
        status, headers, body, encoded = await self._exchange(origin, request, timeouts)
        if encoded:  # decoded here, within max_body: httpx would unpack any size in memory
            return response(status, headers, decoded(headers, b"".join(body), self._max_body), request)
        return response(status, headers, b"".join(body), request)

    async def _exchange(
        self, origin: Origin, request: httpx.Request, timeouts: dict[str, float | None]
    ) -> Answer:
        """Run the exchange, once more on a new connection if a reused one turned out stale."""
        fresh = False
        while True:
            conn = await self._pool.acquire(origin, timeouts.get("pool"), request, fresh=fresh)
            if conn is None:
                conn = await self._open(origin, request, timeouts.get("connect"))
            try:
                answer = await conn.exchange(request, timeouts)
            except StaleError:  # only a reused connection can be stale: the retry's is new
                self._pool.discard(conn)
                if request.method in _IDEMPOTENT:
                    fresh = True
                    continue
                raise httpx.RemoteProtocolError(
                    "the server closed a kept-alive connection before answering", request=request
                ) from None
            except BaseException:
                self._pool.discard(conn)
                raise
            self._pool.release(conn)
            return answer

    async def _open(self, origin: Origin, request: httpx.Request, limit_s: float | None) -> Connection:
        """A new connection to ``origin`` (through the proxy, if any), in the slot the pool
        reserved (freed if this fails); ``limit_s`` bounds all of it (TCP, TLS, CONNECT)."""
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        where = (
            f"{host}:{port}"
            if self._proxy is None
            else f"{host}:{port} through the proxy {self._proxy.shown}"
        )
        try:
            async with asyncio.timeout(limit_s):
                if self._proxy is not None:
                    return await open_via(
                        self._proxy,
                        origin,
                        self._ssl,
                        lambda: Connection(origin, loop, self._max_body),
                        limit_s,
                    )
                tls: dict[str, Any] = {}
                if scheme == "https":
                    tls = {"ssl": self._ssl, "server_hostname": host, "ssl_handshake_timeout": limit_s}
                _, conn = await loop.create_connection(
                    lambda: Connection(origin, loop, self._max_body), host, port, **tls
                )
                return conn
        except TimeoutError:
            self._pool.discard(None)
            raise httpx.ConnectTimeout(f"connecting to {where} timed out", request=request) from None
        except httpx.ProxyError as exc:
            self._pool.discard(None)
            exc.request = request
            raise
        except (OSError, ssl.SSLError) as exc:
            self._pool.discard(None)
            # a hang-up in the TLS handshake is a ConnectionResetError() without text
            tls_used = scheme == "https" or (self._proxy is not None and self._proxy.scheme == "https")
            detail = str(exc) or ("closed during the TLS handshake" if tls_used else repr(exc))
            raise httpx.ConnectError(f"connecting to {where}: {detail}", request=request) from exc
        except BaseException:
            self._pool.discard(None)
            raise

    async def aclose(self) -> None:
        self._pool.close()


def decoded(headers: list[tuple[bytes, bytes]], body: bytes, limit: int) -> bytes:
    """``body`` with its Content-Encoding undone (gzip, deflate; identity), never past ``limit``
    bytes decoded: a small compressed answer can unpack to gigabytes."""
    codings = [
        c.strip().lower()
        for name, value in headers
        if name.lower() == b"content-encoding"
        for c in value.split(b",")
        if c.strip()
    ]
    for coding in reversed(codings):  # the last applied is undone first
        if coding in (b"gzip", b"x-gzip"):
            body = _inflate(body, zlib.MAX_WBITS | 16, limit)
        elif coding == b"deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
            try:
                body = _inflate(body, zlib.MAX_WBITS, limit)
            except _UndecodableError:
                body = _inflate(body, -zlib.MAX_WBITS, limit)
        elif coding != b"identity":
            raise httpx.DecodingError(f"unsupported Content-Encoding {coding.decode('latin-1')!r}")
    return body


class _UndecodableError(httpx.DecodingError):
    """The bytes are not of the coding the answer names (not: they decode to too much)."""


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit + 1)
        if len(out) <= limit and not inflater.unconsumed_tail:
            out += inflater.flush(limit + 1 - len(out))
    except zlib.error as exc:
        raise _UndecodableError(f"answer body does not decode: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise httpx.DecodingError(f"answer body over {limit} bytes once decoded")
    return out


def _response_public(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, request: httpx.Request
) -> httpx.Response:
    """The answer as httpx builds it from ``content=``: read through its decoders at once."""
    return httpx.Response(
        status, headers=headers, content=body, request=request, extensions={"http_version": b"HTTP/1.1"}
    )


def _response_read(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, request: httpx.Request
) -> httpx.Response:
    """The same answer, already read and closed, without the decoder pipeline (a tenth of a
    request's cost here), for an answer without a Content-Encoding (the connection says which).
    It sets what ``read()`` and ``close()`` set (httpx's ``_content``); ``response`` checks it
    against ``_response_public`` at import and falls back to that if httpx changes."""
    answer = httpx.Response(
        status,
        headers=headers,
        stream=httpx.ByteStream(body),
        request=request,
        extensions={"http_version": b"HTTP/1.1"},
    )
    answer._content = body
    answer.is_stream_consumed = True
    answer.is_closed = True
    return answer


def _pick_response() -> Callable[[int, list[tuple[bytes, bytes]], bytes, httpx.Request], httpx.Response]:
    request = httpx.Request("GET", "http://example.com/")
    headers = [(b"Content-Type", b"application/json"), (b"Content-Length", b"10")]
    try:
        fast = _response_read(200, headers, b'{"a": "b"}', request)
        public = _response_public(200, headers, b'{"a": "b"}', request)
        same = all(
            getattr(fast, a) == getattr(public, a)
            for a in (
                "status_code",
                "content",
                "text",
                "is_closed",
                "is_stream_consumed",
                "num_bytes_downloaded",
            )
        )
        same = same and fast.json() == public.json() and fast.headers.raw == public.headers.raw
    except (AttributeError, TypeError, ValueError):
        same = False
    return _response_read if same else _response_public


#: ``response(status, headers, body, request)``: a read, closed ``httpx.Response``.
response = _pick_response()


def _ssl_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
