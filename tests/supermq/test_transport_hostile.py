"""Hostile answers and request framing, run over both transports (``supermq.transport = "http1"``,
the reactor's own, and ``"httpx"``, httpx's own), each direct, through a forward proxy
(absolute form) and through a CONNECT tunnel with TLS (tests/proxy.py), and over
``http.request``'s client, built the way the daemon builds them (``build_http``,
``build_external_http``), against raw sockets on loopback: request smuggling, unbounded header
blocks, a second answer glued to the next exchange, trailers, ``Connection: close``, a server
closing mid-answer, unsolicited bytes, keep-alive expiry and connect timeouts.

Through the tunnel the proxy ends the client's TLS itself (a certificate for ``localhost`` made
at run time) and pipes the plain bytes to the raw server: the client asks
``https://localhost:port`` and gets the raw server's bytes through CONNECT and TLS, unchanged."""

from __future__ import annotations

import asyncio
import socket
import ssl
import weakref
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reactor.settings import SuperMQSettings
from reactor.supermq import httpx_guard
from reactor.supermq.http import Http, build_external_http, build_http
from reactor.supermq.transport import Http1Transport
from tests.proxy import ForwardProxy
from tests.supermq.test_transport import OK, Server, _tls_pair, keep_alive, read_request

TRANSPORTS = ["http1", "httpx"]
#: Each transport direct, through a forward proxy, through a CONNECT tunnel; and http.request's.
VARIANTS = [*TRANSPORTS, "http1 proxy", "http1 tunnel", "httpx proxy", "httpx tunnel", "external"]
_EXTERNAL: weakref.WeakSet[Http] = weakref.WeakSet()


@pytest.fixture(scope="module")
def tunnel_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """The proxy's TLS end of the tunnel (a ``localhost`` certificate) and its CA file."""
    return _tls_pair(tmp_path_factory.mktemp("tunnel"))


class _ViaTunnel(Http):
    """The client asking ``https://localhost:port`` for each raw server's ``http://127.0.0.1:port``."""

    async def request(self, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        tls = httpx.URL(url).copy_with(scheme="https", host="localhost")
        return await super().request(method, tls if isinstance(url, httpx.URL) else str(tls), **kwargs)


@pytest.fixture(params=VARIANTS)
async def http(
    request: pytest.FixtureRequest, tunnel_tls: tuple[ssl.SSLContext, Path]
) -> AsyncIterator[Http]:
    """SuperMQ's client on either transport (direct, or through the proxy), and
    ``http.request``'s (``build_external_http``)."""
    choice, _, via = str(request.param).partition(" ")
    if choice == "external":
        client = build_external_http(SuperMQSettings(timeout_s=5.0, keepalive_s=0.3))
        _EXTERNAL.add(client)
        yield client
        await client.aclose()
        return
    if not via:
        client = build_http(SuperMQSettings(transport=choice, timeout_s=5.0, keepalive_s=0.3))
        yield client
        await client.aclose()
        return
    context, ca = tunnel_tls
    async with ForwardProxy(terminate=context if via == "tunnel" else None) as proxy:
        settings = SuperMQSettings(
            transport=choice, proxy=proxy.url(), ca_bundle=str(ca), timeout_s=5.0, keepalive_s=0.3
        )
        client = build_http(settings)
        if via == "tunnel":
            client = _ViaTunnel(client.transport, settings.timeout_s, settings.deadline_s)
        yield client
        await client.aclose()
    assert proxy.connections > 0, "the client did not go through the proxy"


def _ours(http: Http) -> bool:
    """Whether this client is on the reactor's own transport."""
    return isinstance(http.transport, Http1Transport)


def _external(http: Http) -> bool:
    """Whether this is ``http.request``'s client (``build_external_http``)."""
    return http in _EXTERNAL


async def _raw_requests(reader: asyncio.StreamReader, seen: list[bytes]) -> None:
    """Everything the client sends on a connection, as it arrives."""
    while data := await reader.read(65536):
        seen.append(data)


# ---- httpx's transport: the guard's private path is where it looks ----------------------------


def test_the_glue_guard_finds_httpcores_connection_on_this_version() -> None:
    """httpx_guard reaches h11's state through httpx's and httpcore's private response streams
    (pinned: httpx <0.29, httpcore <1.1). If a version moves them, keep-alive is off for httpx's
    transport (no glued answer, but a connection per request): this fails so that it is seen."""
    assert httpx_guard.GUARDED, "httpcore moved its response streams: update reactor/supermq/httpx_guard.py"
    limits = httpx_guard.guarded_limits(8, 1.0)
    assert limits.max_keepalive_connections == 8


async def test_the_glue_guard_sees_a_real_answers_connection() -> None:
    seen: list[bytes] = []
    transport = httpx.AsyncHTTPTransport()
    async with Server(keep_alive(seen=seen)) as server:
        answer = await transport.handle_async_request(httpx.Request("GET", server.url()))
        state = httpx_guard.h11_state(answer.stream)
        assert state is not None
        body = b"".join([chunk async for chunk in answer.stream])  # type: ignore[union-attr]
        assert (body, state.their_state.__name__) == (b"{}", "DONE")  # read, not closed yet
        await answer.aclose()
        assert state.their_state.__name__ == "IDLE"  # httpcore started the next cycle on it
    await transport.aclose()


# ---- request framing is the transport's alone ------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Length": "0"},  # and a body: a second request on the wire
        {"Content-Length": "3"},
        {"Transfer-Encoding": "gzip, chunked"},  # not chunked framing: refused, as h11 does
        {"Transfer-Encoding": "gzip"},
    ],
)
async def test_a_callers_framing_headers_never_smuggle_a_request(http: Http, headers: dict[str, str]) -> None:
    seen: list[bytes] = []
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK)  # answer at once, so the client is never left waiting
        await writer.drain()
        await _raw_requests(reader, seen)

    async with Server(handler) as server:
        for form in (server.url(), httpx.URL(server.url())):  # httpx's content= form and ours
            with pytest.raises(httpx.LocalProtocolError):
                await http.request("POST", form, content=smuggled, headers=headers)
        await asyncio.sleep(0.1)
    sent = b"".join(seen)
    assert b"/smuggled" not in sent  # never a second request
    if _ours(http):  # h11 refuses after the head left
        assert sent == b""  # ours refuses before anything is sent


async def test_a_callers_matching_content_length_is_sent_once(http: Http) -> None:
    seen: list[bytes] = []
    async with Server(keep_alive(seen=seen)) as server:
        for form in (server.url(), httpx.URL(server.url())):
            answer = await http.request("PUT", form, content=b'{"a":1}', headers={"Content-Length": "7"})
            assert answer.status_code == 200
    assert len(seen) == 2
    for request in seen:
        head, _, body = request.partition(b"\r\n\r\n")
        assert head.lower().count(b"content-length") == 1, head
        assert b"transfer-encoding" not in head.lower()
        assert body == b'{"a":1}'


# ---- hostile answers ---------------------------------------------------------------------------


def _answer_server(answer: bytes) -> Server:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        await reader.read()  # until the client closes

    return Server(handler)


@pytest.mark.parametrize(
    ("what", "answer"),
    [
        ("100,001 headers", b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 100_001 + b"Content-Length: 0\r\n\r\n"),
        ("one 1 MB header", b"HTTP/1.1 200 OK\r\nX: " + b"y" * 1_000_000 + b"\r\nContent-Length: 0\r\n\r\n"),
        ("a header never ending", b"HTTP/1.1 200 OK\r\nX: " + b"y" * 2_000_000),
    ],
)
async def test_an_unbounded_header_block_is_refused(http: Http, what: str, answer: bytes) -> None:
    async with _answer_server(answer) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.request("GET", httpx.URL(server.url()))


async def test_a_header_block_within_the_bound_is_read(http: Http) -> None:
    answer = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: %s\r\n" % (b"p" * 8000) + b"Content-Length: 2\r\n\r\nok"
    async with _answer_server(answer) as server:
        response = await http.request("GET", httpx.URL(server.url()))
    assert (response.status_code, response.content, len(response.headers["x-pad"])) == (200, b"ok", 8000)


async def test_a_second_answer_is_never_glued_to_the_next_exchange(http: Http) -> None:
    """The server sends a complete answer and the start of another in one write: the next
    request must get its own answer, not the leftover glued to it. (httpcore keeps h11's
    leftover bytes for the next cycle: ``httpx_guard`` drops such a connection; ``http.request``'s
    client keeps no connection alive at all.)"""
    count = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        while await read_request(reader):
            count += 1
            if count == 1:
                writer.write(OK + b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nst")
            else:
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nfresh")
            await writer.drain()

    async with Server(handler) as server:
        first = await http.request("GET", httpx.URL(server.url()))
        second = await http.request("GET", httpx.URL(server.url()))
    assert (first.status_code, first.content) == (200, b"{}")
    assert (second.status_code, second.content) == (201, b"fresh")
    assert server.connections == 2  # the polluted connection was dropped


async def test_trailers_do_not_merge_into_the_headers(http: Http) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
        b"3\r\nabc\r\n0\r\nContent-Type: application/evil\r\nX-Trailer: 1\r\n\r\n"
    )
    async with Server(keep_alive(answer)) as server:
        response = await http.request("GET", httpx.URL(server.url()))
        again = await http.request("GET", httpx.URL(server.url()))
    assert response.content == again.content == b"abc"
    assert response.headers.get_list("content-type") == ["text/plain"]
    assert "x-trailer" not in response.headers


async def test_unbounded_trailers_are_refused(http: Http) -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n" + b"X: y\r\n" * 100_001
    async with _answer_server(answer + b"\r\n") as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.request("GET", httpx.URL(server.url()))


# ---- the cases the suite did not execute -------------------------------------------------------


async def test_connection_close_is_honoured(http: Http) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.2)  # the client must not wait for the close, nor reuse the connection

    async with Server(handler) as server:
        answers = [await http.request("GET", httpx.URL(server.url())) for _ in range(3)]
    assert [a.content for a in answers] == [b"ok"] * 3
    assert server.connections == 3


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # short of its length
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",  # inside a chunk
        b"HTTP/1.1 200 OK\r\nContent-Le",  # inside the header block
    ],
)
async def test_a_server_closing_mid_answer_is_an_error(http: Http, answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with Server(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.request("GET", httpx.URL(server.url()))


async def test_unsolicited_bytes_on_an_idle_connection_are_not_an_answer(http: Http) -> None:
    count = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1
        if count == 1:
            await read_request(reader)
            writer.write(OK)
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 500 Unasked\r\nContent-Length: 0\r\n\r\n")  # nobody asked
            await writer.drain()
            await reader.read()
            return
        await keep_alive(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine")(reader, writer)

    async with Server(handler) as server:
        first = await http.request("GET", httpx.URL(server.url()))
        await asyncio.sleep(0.15)
        second = await http.request("GET", httpx.URL(server.url()))
    assert first.status_code == 200
    assert (second.status_code, second.content) == (200, b"mine")


async def test_an_expired_kept_alive_connection_is_not_reused(http: Http) -> None:
    if _external(http):
        pytest.skip("http.request's client keeps no connection alive")
    async with Server(keep_alive()) as server:
        await http.request("GET", httpx.URL(server.url()))
        await http.request("GET", httpx.URL(server.url()))
        assert server.connections == 1  # kept alive
        await asyncio.sleep(0.5)  # past keepalive_s = 0.3
        await http.request("GET", httpx.URL(server.url()))
    assert server.connections == 2


async def test_a_connect_that_hangs_is_a_connect_timeout() -> None:
    """A listener whose accept queue is full drops the SYN: the connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue (backlog 0 holds one or two)
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        await asyncio.sleep(0.1)
        hanging = f"http://127.0.0.1:{port}"
        for choice in TRANSPORTS:  # direct, and through a proxy that hangs the same way
            for proxy, target in (
                ("", hanging),
                (hanging, "http://127.0.0.1:9"),
                (hanging, "https://127.0.0.1:9"),
            ):
                http = build_http(SuperMQSettings(transport=choice, proxy=proxy, timeout_s=0.3))
                loop = asyncio.get_running_loop()
                started = loop.time()
                with pytest.raises(httpx.ConnectTimeout):
                    await http.request("GET", httpx.URL(target + "/"))
                assert loop.time() - started < 3.0, (choice, proxy, target)
                await http.aclose()
    finally:
        for s in fillers:
            s.close()
        listener.close()


_ENCODED = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_compressed_answer_is_bounded_once_decoded(coding: str) -> None:
    """``max_body`` counts the decoded body: 64 MiB of zeros compressed to some 64 KiB were
    unpacked whole in memory (httpx decodes what it is given), past a 1 MiB bound."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31 if coding == "gzip" else 15)
    bomb = packer.compress(b"\0" * (64 << 20)) + packer.flush()
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (
        coding.encode(),
        len(bomb),
    )
    transport = Http1Transport(max_body=1 << 20)
    async with Server(keep_alive(head + bomb)) as server:
        with pytest.raises(httpx.DecodingError, match="over 1048576 bytes once decoded"):
            await transport.handle_async_request(httpx.Request("GET", server.url("/bomb")))
        small = zlib.compressobj(9, zlib.DEFLATED, 31 if coding == "gzip" else 15)
        fine = small.compress(b'{"ok": true}') + small.flush()
        ok = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (
            coding.encode(),
            len(fine),
        )
    async with Server(keep_alive(ok + fine)) as server:
        answer = await transport.handle_async_request(httpx.Request("GET", server.url("/fine")))
        assert answer.json() == {"ok": True}
    await transport.aclose()
