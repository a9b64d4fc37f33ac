"""HTTP/1.1 for the reactor's calls: an httpx transport on asyncio protocols, parsed by llhttp.

Why a transport of our own: one action per event is one request, so a request's client-side cost
is the reactor's cost. Measured here at 64 in flight against a loopback server (bench/http_actions.py
and the commit that added this module): httpx's default transport ~380 requests/s, httpx over
aiohttp ~2,900, pyreqwest (Rust) behind httpx ~2,400, bare aiohttp ~8,000, this transport ~11,000
with httpx's ``Request`` built per call. The parts that are easy to get wrong are not ours: llhttp
(Node.js's parser, through ``httptools``) reads the responses, asyncio does sockets and TLS.

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
- errors are httpx's own (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``WriteTimeout``,
  ``RemoteProtocolError``, ``LocalProtocolError``, ``UnsupportedProtocol``).

What it does not: proxies, HTTP/2, upgrades, ``Expect: 100-continue``. ``supermq.transport =
"httpx"`` selects httpx's own transport for those.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import httptools
import httpx

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_DEFAULT_TIMEOUT = 10.0
Origin = tuple[str, str, int]  # scheme, host, port
Answer = tuple[int, list[tuple[bytes, bytes]], list[bytes]]  # status, headers, body chunks


class _StaleError(Exception):
    """A reused connection was closed by the server before any byte of the answer arrived."""


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    value = request.extensions.get("timeout")
    if isinstance(value, dict):
        return value
    return {"connect": _DEFAULT_TIMEOUT, "read": _DEFAULT_TIMEOUT, "write": _DEFAULT_TIMEOUT, "pool": None}


async def _wire(request: httpx.Request) -> bytes:
    """The request as it goes on the wire: request line, headers (CR or LF in one is refused: no
    header injection; Host added when missing), and the body, chunked when httpx framed it so.
    One pass over the raw headers (httpx's ``Headers.get`` decodes them all on every call)."""
    parts = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    host = chunked = False
    for name, value in request.headers.raw:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
            raise httpx.LocalProtocolError(f"invalid header {name!r}", request=request)
        parts += (name, b": ", value, b"\r\n")
        lowered = name.lower()
        host = host or lowered == b"host"
        chunked = chunked or (lowered == b"transfer-encoding" and value.lower() == b"chunked")
    if not host:  # httpx adds it except in the stream= form; HTTP/1.1 requires it
        parts += (b"Host: ", request.url.netloc, b"\r\n")
    parts.append(b"\r\n")
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        content = b"".join(stream)  # in memory already: no exception, no async iteration
    else:
        try:
            content = request.content
        except httpx.RequestNotRead:
            content = await request.aread()
    if chunked:
        parts.append(b"%x\r\n%s\r\n0\r\n\r\n" % (len(content), content) if content else b"0\r\n\r\n")
    else:
        parts.append(content)
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one exchange at a time, answers read by llhttp."""

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop, max_body: int) -> None:
        self.origin = origin
        self.reused = False
        self.reusable = True
        self.idle_since = 0.0
        self._loop = loop
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset(head_only=False)

    def _reset(self, *, head_only: bool) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self._size = 0
        self._head_only = head_only
        self._headers_done = False
        self._framed = False  # the body has a length or chunks (else it ends at close)
        self._received = False
        self._last_data = 0.0

    def now(self) -> float:
        return self._loop.time()

    def idle_for(self) -> float:
        return self._loop.time() - self.idle_since

    @property
    def usable(self) -> bool:
        t = self._transport
        return self.reusable and t is not None and not t.is_closing()

    # ---- asyncio protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():  # bytes nobody asked for: not to be trusted
            self.reusable = False
            self.close()
            return
        self._received = True
        self._last_data = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols; not supported"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and not self._framed and not self._head_only:
            self._done()  # a body delimited by the end of the connection
        elif not self._received and self.reused:
            self._waiter.set_exception(_StaleError())
        else:
            what = "while sending the answer" if self._received else "without sending an answer"
            self._fail(httpx.RemoteProtocolError(f"the server closed the connection {what}"))

    def pause_writing(self) -> None:
        if self._drained is None or self._drained.done():
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # ---- llhttp callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self.status < 200:
            return
        self._headers_done = True
        self._framed = any(
            n.lower() == b"content-length" or (n.lower() == b"transfer-encoding" and b"chunked" in v.lower())
            for n, v in self.headers
        )
        if self._head_only:
            self.reusable = False  # llhttp would wait for a body a HEAD answer does not have
            self._done()

    def on_body(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._max_body:
            self._fail(httpx.RemoteProtocolError(f"answer body over {self._max_body} bytes"))
            return
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        if self.status < 200:  # an interim answer (100 Continue, 103 Early Hints): wait for the real one
            self.headers = []
            return
        if not self._parser.should_keep_alive():
            self.reusable = False
        self._done()

    # ---- exchange -----------------------------------------------------------------------------

    def _done(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((self.status, self.headers, self.body))
            self.headers, self.body = [], []  # whatever follows cannot touch this answer

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    async def exchange(self, request: httpx.Request, timeouts: dict[str, float | None]) -> Answer:
        """Send the request and wait for the whole answer."""
        assert self._transport is not None
        data = await _wire(request)
        self._reset(head_only=request.method == "HEAD")
        waiter: asyncio.Future[Answer] = self._loop.create_future()
        self._waiter = waiter
        try:
            self._transport.write(data)
            if self._drained is not None and not self._drained.done():
                await self._wait(self._drained, timeouts.get("write"), httpx.WriteTimeout, request)
            await self._wait(waiter, timeouts.get("read"), httpx.ReadTimeout, request)
        finally:
            self._waiter = None
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled():
                waiter.exception()  # seen: an answer that failed after a write timeout is not "lost"
        return waiter.result()

    async def _wait(
        self,
        future: asyncio.Future[Any],
        limit_s: float | None,
        error: type[httpx.TimeoutException],
        request: httpx.Request,
    ) -> None:
        """Wait for ``future``; ``limit_s`` is the longest silence from the server. (A bound method
        and a cancelled handle, not a closure: a closure over its own timer is a reference cycle
        per request, garbage only the cyclic collector frees.)"""
        if limit_s is None:
            await future
            return
        self._last_data = self._loop.time()
        self._timer = self._loop.call_later(limit_s, self._check, future, limit_s, error, request)
        try:
            await future
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _check(
        self,
        future: asyncio.Future[Any],
        limit_s: float,
        error: type[httpx.TimeoutException],
        request: httpx.Request,
    ) -> None:
        self._timer = None
        if future.done():
            return
        quiet = self._loop.time() - self._last_data
        if quiet < limit_s:
            self._timer = self._loop.call_later(limit_s - quiet, self._check, future, limit_s, error, request)
            return
        self.reusable = False
        future.set_exception(error(f"no answer from the server within {limit_s:g}s", request=request))
        self.close()

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.close()


class _Pool:
    """Connections per origin, at most ``limit`` open in all; callers queue for a slot."""

    def __init__(self, limit: int, keepalive_s: float) -> None:
        self._limit = limit
        self._keepalive_s = keepalive_s
        self._open = 0
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def open(self) -> int:
        return self._open

    async def acquire(
        self, origin: Origin, limit_s: float | None, request: httpx.Request, *, fresh: bool = False
    ) -> _Connection | None:
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

    def _take_idle(self, origin: Origin) -> _Connection | None:
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

    def release(self, conn: _Connection) -> None:
        """Give a connection back after an exchange: kept if still good, else closed."""
        if conn.usable:
            conn.reused = True
            conn.idle_since = conn.now()
            self._idle.setdefault(conn.origin, deque()).append(conn)
        else:
            self._drop(conn)
        self._wake()

    def discard(self, conn: _Connection | None) -> None:
        """Close a connection (or free a reserved slot when ``conn`` is None)."""
        if conn is None:
            self._open -= 1
        else:
            self._drop(conn)
        self._wake()

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        self._open -= 1

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                self._drop(idle.pop())


class Http1Transport(httpx.AsyncBaseTransport):
    """httpx's transport interface over a lean HTTP/1.1 client (see the module docstring)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 100,
        keepalive_s: float = 15.0,
        max_body: int = 32 * 1024 * 1024,
    ) -> None:
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else _ssl_context(verify)
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
        timeouts = _timeouts(request)
        status, headers, body = await self._exchange(origin, request, timeouts)
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
            except _StaleError:  # only a reused connection can be stale: the retry's is new
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

    async def _open(self, origin: Origin, request: httpx.Request, limit_s: float | None) -> _Connection:
        """A new connection to ``origin``, in the slot the pool reserved (freed if this fails)."""
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {}
        if scheme == "https":
            tls = {"ssl": self._ssl, "server_hostname": host, "ssl_handshake_timeout": limit_s}
        try:
            async with asyncio.timeout(limit_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin, loop, self._max_body), host, port, **tls
                )
        except TimeoutError:
            self._pool.discard(None)
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from None
        except (OSError, ssl.SSLError) as exc:
            self._pool.discard(None)
            raise httpx.ConnectError(f"connecting to {host}:{port}: {exc}", request=request) from exc
        except BaseException:
            self._pool.discard(None)
            raise
        return conn

    async def aclose(self) -> None:
        self._pool.close()


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
    request's cost here) when nothing is to be decoded. It sets what ``read()`` and ``close()``
    set (httpx's ``_content``); ``response`` checks it against
    ``_response_public`` at import and falls back to that if httpx changes."""
    for name, _ in headers:
        if name.lower() == b"content-encoding":
            return _response_public(status, headers, body, request)
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
