"""One HTTP/1.1 connection of the reactor's transport: the request on the wire, the answer read
by llhttp (``httptools``), timeouts as the longest silence, flow control, and what a closed or
misbehaving server looks like (see transport.py for the pool around it and why it is ours)."""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import httpx

Origin = tuple[str, str, int]  # scheme, host, port
#: status, headers, body chunks, and whether the body has a Content-Encoding to undo
Answer = tuple[int, list[tuple[bytes, bytes]], list[bytes], bool]


class StaleError(Exception):
    """A reused connection was closed by the server before any byte of the answer arrived."""


#: The longest header block of an answer (status line and headers, or the trailers): h11's
#: ``max_incomplete_event_size`` and Node.js's (llhttp's) default; past it the answer is refused.
MAX_HEAD = 16 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_FRAMING = (b"content-length", b"transfer-encoding")


async def wire(request: httpx.Request, forward: bytes | None = None) -> bytes:
    """The request as it goes on the wire: request line, headers (CR or LF in one is refused: no
    header injection; Host added when missing), and the body framed here alone: Content-Length
    for a body in memory, chunked for a streamed one. A caller's Content-Length or
    Transfer-Encoding is never sent: one that disagrees with the body (``Content-Length: 0`` and a
    body would put a second request on the wire) or a transfer coding other than chunked (as h11,
    httpx's own parser) is refused before anything is sent. ``forward``: to a forward proxy, the
    request-target in absolute form and this ``Proxy-Authorization`` line (b"" for none) added."""
    raw = request.headers.raw
    names = [name.lower() for name, _ in raw]
    lines = [b"%s: %s\r\n" % pair for pair in raw]
    if b"host" not in names:  # httpx adds it except in the stream= form; HTTP/1.1 requires it
        lines.append(b"Host: %s\r\n" % request.url.netloc)
    head = b"".join(lines)
    # One line per header and nothing else: a CR or LF inside a name or value would add one.
    if head.count(b"\n") != len(lines) or head.count(b"\r") != len(lines) or b":" in b"".join(names):
        bad = next(n for n, v in raw if b"\r" in n + v or b"\n" in n + v or b":" in n)
        raise httpx.LocalProtocolError(f"invalid header {bad!r}", request=request)
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        content = b"".join(stream)  # in memory already: no exception, no async iteration
        streamed = False
    else:
        try:
            content = request.content
        except httpx.RequestNotRead:
            content = await request.aread()
        streamed = True
    # The usual case, checked at C speed: httpx's (or Http._framed's) one Content-Length, equal
    # to the body, or none for an empty GET; then the head is sent as it is.
    lengths = names.count(b"content-length")
    if streamed or b"transfer-encoding" in names or lengths > 1:
        pass
    elif lengths == 1:
        if raw[names.index(b"content-length")][1] == b"%d" % len(content):
            return _join(request, head, content, forward)
    elif not content and request.method not in _BODY_METHODS:
        return _join(request, head, content, forward)
    return _join(request, *_reframed(request, raw, names, content, streamed), forward)


def _reframed(
    request: httpx.Request, raw: list[tuple[bytes, bytes]], names: list[bytes], content: bytes, streamed: bool
) -> tuple[bytes, bytes]:
    """The head without the caller's framing headers (checked first) and with the transport's;
    the body as it goes (chunked when streamed)."""
    framing = [(n, raw[i][1]) for i, n in enumerate(names) if n in _FRAMING]
    _check_framing(framing, len(content), request)
    lines = [b"%s: %s\r\n" % pair for pair, n in zip(raw, names, strict=True) if n not in _FRAMING]
    if b"host" not in names:
        lines.append(b"Host: %s\r\n" % request.url.netloc)
    if streamed:
        lines.append(b"Transfer-Encoding: chunked\r\n")
        content = b"%x\r\n%s\r\n0\r\n\r\n" % (len(content), content) if content else b"0\r\n\r\n"
    elif content or request.method in _BODY_METHODS:
        lines.append(b"Content-Length: %d\r\n" % len(content))
    return b"".join(lines), content


def _join(request: httpx.Request, head: bytes, content: bytes, forward: bytes | None) -> bytes:
    url = request.url
    if forward is None:
        start = b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), url.raw_path)
        return b"".join((start, head, b"\r\n", content))
    target = b"%s://%s%s" % (url.raw_scheme, url.netloc, url.raw_path)
    start = b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), target)
    return b"".join((start, head, forward, b"\r\n", content))


def _check_framing(framing: list[tuple[bytes, bytes]], size: int, request: httpx.Request) -> None:
    """A caller's framing headers must say what the transport will send anyway."""
    for name, value in framing:
        if name == b"transfer-encoding" and value.strip().lower() != b"chunked":
            raise httpx.LocalProtocolError(
                f"Transfer-Encoding {value.decode('latin-1')!r}: only chunked is supported",
                request=request,
            )
        if name == b"content-length" and value.strip() != b"%d" % size:
            raise httpx.LocalProtocolError(
                f"Content-Length {value.decode('latin-1')!r} does not match the body ({size} bytes)",
                request=request,
            )


class _RefusedError(Exception):
    """Raised in a parser callback to stop parsing an answer that is refused."""


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one exchange at a time, answers read by llhttp."""

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop, max_body: int) -> None:
        self.origin = origin
        #: Through a forward proxy (absolute-form targets): its Proxy-Authorization line, or b"".
        self.forward: bytes | None = None
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
        #: The wait the timer watches: (future, longest silence, error, request), or None.
        self._watch: tuple[asyncio.Future[Any], float, type[httpx.TimeoutException], httpx.Request] | None = (
            None
        )
        self._reset(head_only=False)

    def _reset(self, *, head_only: bool) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self._size = 0
        self._fed = 0  # bytes given to the parser while the header block is not complete
        self._head_size = 0  # bytes of the header lines (or trailers) so far
        self._head_only = head_only
        self._answered = False
        self._headers_done = False
        self._framed = False  # the body has a length or chunks (else it ends at close)
        self._encoded = False
        self._received = False
        self._last_data = 0.0
        self._deadline: float | None = None

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
        # Bytes nobody asked for (on an idle connection, or after the answer): not to be trusted.
        # (On a new connection, bytes a server sends before reading the request are read as its
        # answer: they cannot be told from a fast one, by this transport or httpx's.)
        if self._waiter is None or self._waiter.done():
            self.reusable = False
            self.close()
            return
        self._received = True
        self._last_data = self._loop.time()
        if not self._headers_done:  # httptools holds a header until it ends: bound what it holds
            self._fed += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols; not supported"))
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _RefusedError):
                raise
            self._fail(httpx.RemoteProtocolError(str(exc.__context__)))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP answer: {exc}"))
        else:
            if not self._headers_done and self._fed > MAX_HEAD:
                self._fail(httpx.RemoteProtocolError(f"the answer's header block is over {MAX_HEAD} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and not self._framed and not self._head_only:
            self._done()  # a body delimited by the end of the connection
        elif not self._received and self.reused:
            self._waiter.set_exception(StaleError())
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

    def on_message_begin(self) -> None:
        if self._answered:  # a second answer to one request: never glued to the next exchange
            self.reusable = False
            raise _RefusedError("the server sent more than one answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._headers_done:  # a trailer: bounded, and not one of the answer's headers
            if self._head_size > MAX_HEAD:
                raise _RefusedError(f"the answer's trailers are over {MAX_HEAD} bytes")
            return
        # llhttp keeps a value's trailing whitespace, which is not part of it (RFC 9110 5.5)
        self.headers.append((name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        if self._head_size > MAX_HEAD:  # completed within one large read: the fed bound did not see it
            raise _RefusedError(f"the answer's header block is over {MAX_HEAD} bytes")
        self.status = self._parser.get_status_code()
        if self.status < 200:
            return
        self._headers_done = True
        self._head_size = 0
        framed = encoded = False  # one pass: the answer's framing, and whether it is encoded
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                framed = True
            elif lowered == b"content-encoding":
                encoded = True
        self._framed, self._encoded = framed, encoded
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
            self._head_size = self._fed = 0
            return
        if not self._parser.should_keep_alive():
            self.reusable = False
        self._done()

    # ---- exchange -----------------------------------------------------------------------------

    def _done(self) -> None:
        self._answered = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((self.status, self.headers, self.body, self._encoded))
            self.headers, self.body = [], []  # whatever follows cannot touch this answer

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    async def exchange(self, request: httpx.Request, timeouts: dict[str, float | None]) -> Answer:
        """Send the request and wait for the whole answer."""
        assert self._transport is not None
        data = await wire(request, self.forward)
        self._reset(head_only=request.method == "HEAD")
        waiter: asyncio.Future[Answer] = self._loop.create_future()
        self._waiter = waiter
        whole = timeouts.get("deadline")  # the whole answer's limit, checked by the read timer
        self._deadline = None if whole is None else self._loop.time() + whole
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
        """Wait for ``future``; ``limit_s`` is the longest silence from the server.

        The connection keeps one timer armed across its exchanges instead of a new one per wait
        (a timer and its cancellation were ~12% of a request's CPU here): it fires at or before
        the watched wait's due time and ``_check`` measures the silence then, arming itself again
        for what is left. Idle, it fires once into nothing and is not armed again until the next
        wait; ``close`` cancels it. (A bound method and the watch in an attribute, not a closure:
        a closure over its own timer is a reference cycle per request.)"""
        if limit_s is None:
            await future
            return
        now = self._loop.time()
        self._last_data = now
        self._watch = (future, limit_s, error, request)
        timer = self._timer
        if timer is None or timer.when() > now + limit_s:  # none, or one that would fire too late
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(now + limit_s, self._check)
        try:
            await future
        finally:
            self._watch = None

    def _check(self) -> None:
        self._timer = None
        watch = self._watch
        if watch is None or watch[0].done():  # idle, or answered: the next wait arms it again
            return
        future, limit_s, error, request = watch
        now = self._loop.time()
        quiet = now - self._last_data
        left = None if self._deadline is None else self._deadline - now
        if left is not None and left <= 0:  # a server dripping its answer, each byte in time
            message = "no whole answer within supermq.deadline_s"
        elif quiet < limit_s:
            wait = limit_s - quiet if left is None else min(limit_s - quiet, left)
            self._timer = self._loop.call_later(wait, self._check)
            return
        else:
            message = f"no answer from the server within {limit_s:g}s"
        self.reusable = False
        future.set_exception(error(message, request=request))
        self.close()

    def close(self) -> None:
        self.reusable = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
