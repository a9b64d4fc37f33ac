"""httpx's own transport, without answers glued to the next exchange.

The cause: when a server sends a complete answer and more bytes in one write (the start of a
second answer to one request), h11 keeps the bytes past the answer in its receive buffer, and
httpcore's ``_response_closed`` calls ``start_next_cycle()``, which keeps them: the connection goes
back to the pool and the leftover is read as the next request's answer. (Bytes that arrive later,
on an idle connection, are caught by httpcore itself: a readable idle socket counts as expired.)
httpcore offers no public hook at that moment (its ``trace`` extension names the events, not the
connection), so this wrapper reaches the connection's ``h11.Connection`` through httpx's and
httpcore's private response streams, and when the answer is complete with bytes left over it calls
h11's public ``send_failed()`` before closing the answer: httpcore then sees a broken cycle and
closes the connection instead of pooling it, before the pool can hand it to anyone.

The private path is pinned (httpx ``<0.29``, httpcore ``<1.1`` in pyproject.toml) and checked at
import without a network (``GUARDED``): if a version moved it, ``guarded_limits`` turns keep-alive
off (a connection per exchange cannot glue anything) and tests/supermq/test_transport_hostile.py's
self-check fails loudly.

``failed_in_connect`` tells, for ``send``'s classification, a failure while httpcore's tunnel
awaited the proxy's answer to CONNECT (not sent) from one after the request left (ambiguous).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from typing import Any

import h11
import httpcore
import httpx

# (owner attribute) names, from httpx's answer stream down to the HTTP/1.1 connection's h11 state:
# httpx.AsyncResponseStream._httpcore_stream -> httpcore PoolByteStream._stream ->
# HTTP11ConnectionByteStream._connection -> AsyncHTTP11Connection._h11_state
_CHAIN = ("_httpcore_stream", "_stream", "_connection", "_h11_state")


def h11_state(stream: object) -> h11.Connection | None:
    """The ``h11.Connection`` under an httpx answer stream, or None (HTTP/2, or a moved path)."""
    node: object = stream
    for name in _CHAIN:
        node = getattr(node, name, None)
        if node is None:
            return None
    return node if isinstance(node, h11.Connection) else None


def _self_check() -> bool:
    """Whether the private path is where this module looks, built from the installed versions'
    own classes without a network exchange."""
    try:  # by name: a module that moved is a failed check, not a failed import of the reactor
        pool_stream = importlib.import_module("httpcore._async.connection_pool").PoolByteStream
        http11_stream = importlib.import_module("httpcore._async.http11").HTTP11ConnectionByteStream
        answer_stream = importlib.import_module("httpx._transports.default").AsyncResponseStream
        origin = httpcore.Origin(b"http", b"example.com", 80)
        http11 = httpcore.AsyncHTTP11Connection(origin=origin, stream=_NoStream())
        request = httpcore.Request("GET", "http://example.com/")
        pool = httpcore.AsyncConnectionPool()
        pooled = pool_stream(http11_stream(http11, request), None, pool)
        return h11_state(answer_stream(pooled)) is http11._h11_state
    except (ImportError, AttributeError, TypeError):
        return False


class _NoStream(httpcore.AsyncNetworkStream):
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        raise NotImplementedError

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


#: The private path checked at import: keep-alive only when the guard can see the leftover.
GUARDED = _self_check()


def guarded_limits(max_connections: int, keepalive_s: float, *, keep_alive: bool = True) -> httpx.Limits:
    """httpx's pool limits: keep-alive only if asked and the guard works on this httpcore."""
    keep = max_connections if keep_alive and GUARDED else 0
    return httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=keep, keepalive_expiry=keepalive_s
    )


class _Sealed(httpx.AsyncByteStream):
    """An answer stream that breaks the connection's cycle, when it closes, if the server sent
    bytes past the complete answer."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        state = h11_state(self._inner)
        if state is not None and state.their_state is h11.DONE and state.trailing_data[0]:
            state.send_failed()  # httpcore's _response_closed then closes, never pools, it
        await self._inner.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's transport whose connections never carry bytes from one exchange to the next."""

    def __init__(self, inner: httpx.AsyncHTTPTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = await self.inner.handle_async_request(request)
        answer.stream = _Sealed(answer.stream)
        return answer

    async def aclose(self) -> None:
        await self.inner.aclose()


def failed_in_connect(error: BaseException) -> bool:
    """Whether httpx's transport failed while asking a proxy for a tunnel: an httpcore exchange
    of a CONNECT request was on the way down to where it was raised (a timeout or a lost
    connection while the proxy's answer was awaited). The request itself was not sent then.

    httpcore says so in no exception type (a ReadTimeout is a ReadTimeout), so this looks at the
    frames the exception went through (``handle_async_request`` with a ``request`` local, the
    exchange httpcore's tunnel sends first). If httpcore named them otherwise, nothing matches:
    the failure stays "may have been sent", the conservative side."""
    seen: set[int] = set()
    node: BaseException | None = error
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        trace = node.__traceback__
        while trace is not None:
            frame = trace.tb_frame
            if frame.f_code.co_name == "handle_async_request":
                request = frame.f_locals.get("request")
                if isinstance(request, httpcore.Request) and request.method == b"CONNECT":
                    return True
            trace = trace.tb_next
        node = node.__cause__ or node.__context__
    return False
