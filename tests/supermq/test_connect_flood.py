"""A proxy that answers CONNECT with interim (1xx) answers without end: the whole answer, interim
heads included, is bounded at ``MAX_HEAD`` and refused as ``httpx.ProxyError`` (not sent) at once,
with the tunnel's buffer bounded and the event loop never stalled by it."""

from __future__ import annotations

import asyncio
import contextlib
import tracemalloc

import httpx
import pytest

from reactor.errors import AmbiguousError, RetryableError
from reactor.settings import SuperMQSettings
from reactor.supermq.http import build_http, send
from reactor.supermq.transport import Http1Transport
from tests.servers import free_port

_INTERIM = b"HTTP/1.1 100 Continue\r\n\r\n"


async def _flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the CONNECT request, then writes interim answers until the client goes away."""
    with contextlib.suppress(OSError):
        await reader.readuntil(b"\r\n\r\n")
        while True:
            writer.write(_INTERIM * 2600)  # 65 kB a write
            await writer.drain()
    writer.close()


async def _largest_stall(stop: asyncio.Event, stalls: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.005)
        stalls.append(loop.time() - before - 0.005)


async def test_endless_interim_answers_to_connect_are_refused_at_once() -> None:
    """Before: the answer was buffered without bound and parsed again from its first byte on
    every read (10.5 MB buffered, the loop stalled about a second per read, until the connect
    timeout). Now: refused after MAX_HEAD bytes of it, a fraction of a second, nothing stalled."""
    server = await asyncio.start_server(_flood, "127.0.0.1", 0)
    proxy = f"http://u:pw@127.0.0.1:{server.sockets[0].getsockname()[1]}"
    transport = Http1Transport(proxy=proxy)
    timeout = httpx.Timeout(5.0).as_dict()
    request = httpx.Request(
        "POST", f"https://127.0.0.1:{free_port()}/x", content=b"{}", extensions={"timeout": timeout}
    )
    loop = asyncio.get_running_loop()
    stop, stalls = asyncio.Event(), list[float]()
    ticker = asyncio.create_task(_largest_stall(stop, stalls))
    tracemalloc.start()
    started = loop.time()
    try:
        with pytest.raises(httpx.ProxyError, match="over") as refused:
            await transport.handle_async_request(request)
        elapsed = loop.time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        stop.set()
        await ticker
        await transport.aclose()
    assert "pw" not in str(refused.value)
    assert elapsed < 1.0, f"refused after {elapsed:.2f} s"
    assert max(stalls) < 0.05, f"the event loop stalled {max(stalls):.3f} s"
    assert peak < 2_000_000, f"peak {peak / 1e6:.1f} MB"
    http = build_http(SuperMQSettings(proxy=proxy, timeout_s=5.0))
    try:
        with pytest.raises(RetryableError, match="over") as failed:
            await send(http, "POST", httpx.URL(f"https://127.0.0.1:{free_port()}/x"), "test", content=b"{}")
        assert not isinstance(failed.value, AmbiguousError)  # not sent: safe to retry
    finally:
        await http.aclose()
        server.close()
