"""The reactor's HTTP/1.1 transport against real sockets on loopback: keep-alive, body framings,
interim answers, the keep-alive race, timeouts, the pool bound, TLS verification, hostile answers,
and the shortcuts in building requests and responses held equal to httpx's own forms."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from reactor.settings import SuperMQSettings
from reactor.supermq import transport as tr
from reactor.supermq.client import SuperMQClient
from reactor.supermq.http import Http, _join_fast, _join_parsed, build_http
from reactor.supermq.httpx_guard import GuardedTransport
from reactor.supermq.simulator import Simulator
from reactor.supermq.transport import Http1Transport
from tests.certs.corpus import issue
from tests.servers import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request (head and Content-Length body); b"" at the end of the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


class Server:
    """A raw asyncio server on loopback; counts connections and requests."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = free_port()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    def url(self, path: str = "/x", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"


def keep_alive(answer: bytes = OK, seen: list[bytes] | None = None) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await read_request(reader):
            if seen is not None:
                seen.append(request)
            writer.write(answer)
            await writer.drain()

    return handler


@pytest.fixture
async def transport() -> AsyncIterator[Http1Transport]:
    t = Http1Transport(max_connections=4)
    yield t
    await t.aclose()


@pytest.fixture(params=["http1", "httpx"])
async def either(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncBaseTransport]:
    """Ours, or httpx's own as the daemon builds it (``supermq.transport = "httpx"``: guarded,
    httpx_guard.py), both with 4 connections at most."""
    t: httpx.AsyncBaseTransport
    if request.param == "http1":
        t = Http1Transport(max_connections=4)
    else:
        inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=4, max_keepalive_connections=4))
        t = GuardedTransport(inner)  # as build_http makes it
    yield t
    await t.aclose()


def _timeout(read: float = 5.0, pool: float | None = 5.0) -> dict[str, float | None]:
    return {"connect": 5.0, "read": read, "write": 5.0, "pool": pool}


async def call(
    t: httpx.AsyncBaseTransport, method: str, url: str, content: bytes | None = None, **timeouts: float
) -> httpx.Response:
    request = httpx.Request(method, url, content=content, extensions={"timeout": _timeout(**timeouts)})
    return await t.handle_async_request(request)


async def _read(
    t: httpx.AsyncBaseTransport, method: str, url: str, content: bytes | None = None
) -> httpx.Response:
    """The answer read whole (httpx's transport holds the connection until it is)."""
    answer = await call(t, method, url, content)
    await answer.aread()
    return answer


async def test_keep_alive_reuses_a_bounded_pool(either: httpx.AsyncBaseTransport) -> None:
    seen: list[bytes] = []
    async with Server(keep_alive(seen=seen)) as server:
        answers = await asyncio.gather(*(_read(either, "PUT", server.url(), b'{"n": 1}') for _ in range(200)))
    assert [a.status_code for a in answers] == [200] * 200
    assert all(a.json() == {} for a in answers)
    assert len(seen) == 200
    assert server.connections <= 4  # max_connections, reused 50 times each on average
    assert seen[0].startswith(b"PUT /x HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nContent-Length: 8\r\n" in seen[0]
    assert seen[0].endswith(b'\r\n\r\n{"n": 1}')


async def test_chunked_close_delimited_interim_and_head(either: httpx.AsyncBaseTransport) -> None:
    answers = {
        b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"/interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nz",
        b"/head": b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n",
    }

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await read_request(reader):
            path = request.split(b" ")[1]
            if path == b"/close":  # no length: the body ends with the connection
                writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
                await writer.drain()
                return
            writer.write(answers[path])
            await writer.drain()

    async def read(method: str, path: str) -> httpx.Response:
        answer = await call(either, method, server.url(path))
        await answer.aread()
        return answer

    async with Server(handler) as server:
        chunked = await read("GET", "/chunked")
        interim = await read("GET", "/interim")
        closed = await read("GET", "/close")
        head = await read("HEAD", "/head")
        again = await read("GET", "/chunked")
    assert (chunked.status_code, chunked.content) == (200, b"abcde")
    assert (interim.status_code, interim.content) == (201, b"z")
    assert (closed.status_code, closed.content) == (200, b"until the end")
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "50")
    assert again.content == b"abcde"
    if isinstance(either, Http1Transport):
        assert server.connections == 3  # /close and HEAD ended their connections; the rest kept one


async def test_a_stale_kept_alive_connection_is_retried_only_when_idempotent(
    transport: Http1Transport,
) -> None:
    """The keep-alive race: the server closes a kept connection as the next request arrives."""

    async def one_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        await read_request(reader)  # the second request on this connection: closed, unanswered

    async with Server(one_then_hang_up) as server:
        await call(transport, "GET", server.url())
        retried = await call(transport, "GET", server.url())  # on a new connection
        assert retried.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="kept-alive connection before answering"):
            await call(transport, "POST", server.url(), b"{}")  # not repeated: it may have acted
    assert server.connections == 2  # the GET's retry opened the second; the POST was not retried


async def test_timeouts_refusal_and_the_pool_bound() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    one = Http1Transport(max_connections=1)
    async with Server(silent) as server:
        hanging = asyncio.create_task(call(one, "GET", server.url(), read=5.0))
        await asyncio.sleep(0.1)
        with pytest.raises(httpx.PoolTimeout):
            await call(one, "GET", server.url(), pool=0.2)
        hanging.cancel()
        await asyncio.gather(hanging, return_exceptions=True)
        assert one.open_connections == 0  # the cancelled exchange gave its slot back
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(httpx.ReadTimeout):
            await call(one, "GET", server.url(), read=0.3)
        assert 0.25 < loop.time() - started < 2.0
    with pytest.raises(httpx.ConnectError):
        await call(one, "GET", f"http://127.0.0.1:{free_port()}/")
    with pytest.raises(httpx.UnsupportedProtocol):
        await call(one, "GET", "ftp://127.0.0.1/")
    assert one.open_connections == 0
    await one.aclose()


def _delayed(delays: list[float]) -> Handler:
    """Keep-alive: the n-th request answered after ``delays[n]`` seconds (never past the list)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for delay in delays:
            await read_request(reader)
            await asyncio.sleep(delay)
            writer.write(OK)
            await writer.drain()
        await asyncio.sleep(30)

    return handler


@pytest.mark.parametrize(
    ("first_read", "pause"),
    [(5.0, 0.0), (0.2, 0.4)],  # an earlier exchange's longer timeout; its timer fired while idle
)
async def test_a_read_timeout_holds_on_a_reused_connection(first_read: float, pause: float) -> None:
    """The read timer a connection keeps across its exchanges fires in time for the exchange at
    hand, whatever the one before it set, and never early."""
    one = Http1Transport(max_connections=1)
    loop = asyncio.get_running_loop()
    async with Server(_delayed([0.0, 0.35, 60.0])) as server:
        assert (await call(one, "GET", server.url(), read=first_read)).status_code == 200
        await asyncio.sleep(pause)
        started = loop.time()  # answered after 0.35 s of silence, within its 0.5 s: no timeout
        assert (await call(one, "GET", server.url(), read=0.5)).status_code == 200
        assert loop.time() - started > 0.3
        started = loop.time()
        with pytest.raises(httpx.ReadTimeout):
            await call(one, "GET", server.url(), read=0.3)
        assert 0.25 < loop.time() - started < 1.0
        assert server.connections == 1  # all three on the one kept-alive connection
    await one.aclose()


async def test_a_server_that_stops_reading_ends_in_a_write_timeout(transport: Http1Transport) -> None:
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(30)  # never reads the body: the socket buffers fill up

    request = httpx.Request(
        "PUT",
        "http://127.0.0.1:1/",  # replaced below
        content=b"x" * (64 * 1024 * 1024),
        extensions={"timeout": {"connect": 5.0, "read": 5.0, "write": 0.3, "pool": 5.0}},
    )
    async with Server(deaf) as server:
        request.url = httpx.URL(server.url())
        del request.headers["Host"]  # the transport adds it from the URL
        with pytest.raises(httpx.WriteTimeout):
            await transport.handle_async_request(request)
    assert transport.open_connections == 0
    async with Server(keep_alive()) as server:  # the same body to a server that reads: flow control
        big = await call(transport, "PUT", server.url(), b"y" * (64 * 1024 * 1024), read=10.0)
    assert big.status_code == 200


async def test_hostile_answers_and_header_injection(transport: Http1Transport) -> None:
    small = Http1Transport(max_body=100)
    answers = {
        b"/garbage": b"HTTP/1.1 abc\r\n\r\n",
        b"/big": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000,
    }
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await read_request(reader):
            seen.append(request)
            writer.write(answers[request.split(b" ")[1]])
            await writer.drain()

    async with Server(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError, match="malformed HTTP answer"):
            await call(transport, "GET", server.url("/garbage"))
        with pytest.raises(httpx.RemoteProtocolError, match="over 100 bytes"):
            await call(small, "GET", server.url("/big"))
        smuggled = httpx.Request(
            "GET",
            server.url("/big"),
            headers={"X-A": "1\r\nX-Injected: 2"},
            extensions={"timeout": _timeout()},
        )
        with pytest.raises(httpx.LocalProtocolError, match="invalid header"):
            await transport.handle_async_request(smuggled)
        for name, value in (("X-B\nX-C", "1"), ("X:Y", "1"), ("X-D", "2\r")):
            odd = httpx.Request("GET", server.url("/big"), headers=[(name.encode(), value.encode())])
            with pytest.raises(httpx.LocalProtocolError, match="invalid header"):
                await transport.handle_async_request(odd)
    assert len(seen) == 2  # the smuggling request never left
    await small.aclose()


async def test_gzip_answers_are_decoded(either: httpx.AsyncBaseTransport) -> None:
    body = gzip.compress(b'{"zipped": true}')
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    async with Server(keep_alive(answer)) as server:
        response = await call(either, "GET", server.url())
        await response.aread()
    assert response.json() == {"zipped": True}


def _tls_pair(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A CA and a localhost server certificate made now; the server context and the CA file."""
    ca = issue("reactor test CA", ca=True)
    leaf = issue("localhost", ca, eku=[ExtendedKeyUsageOID.SERVER_AUTH], san="localhost")
    (tmp_path / "ca.pem").write_text(ca.pem)
    (tmp_path / "server.pem").write_text(leaf.pem)
    (tmp_path / "server.key").write_bytes(
        leaf.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    return server, tmp_path / "ca.pem"


async def test_tls_is_verified_by_default(tmp_path: Path) -> None:
    server_ctx, ca_file = _tls_pair(tmp_path)
    default = Http1Transport()
    trusting = Http1Transport(verify=ssl.create_default_context(cafile=str(ca_file)))
    unverified = Http1Transport(verify=False)
    async with Server(keep_alive(), tls=server_ctx) as server:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await call(default, "GET", server.url(host="localhost"))
        ok = await call(trusting, "GET", server.url(host="localhost"))
        with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|match"):
            await call(trusting, "GET", server.url(host="127.0.0.1"))  # not the certificate's name
        insecure = await call(unverified, "GET", server.url(host="127.0.0.1"))
    assert ok.status_code == insecure.status_code == 200
    for t in (default, trusting, unverified):
        await t.aclose()


async def test_supermq_settings_choose_tls_trust(tmp_path: Path) -> None:
    """``supermq.ca_bundle`` trusts a private CA; ``verify_tls = false`` trusts anything; the
    default trusts only the system's CAs."""
    server_ctx, ca_file = _tls_pair(tmp_path)
    async with Server(keep_alive(), tls=server_ctx) as server:
        url = httpx.URL(server.url(host="localhost"))
        outcomes: dict[str, int | str] = {}
        choices: dict[str, dict[str, Any]] = {
            "default": {},
            "ca_bundle": {"ca_bundle": str(ca_file)},
            "unverified": {"verify_tls": False},
        }
        for name, options in choices.items():
            http = build_http(SuperMQSettings(**options))
            try:
                outcomes[name] = (await http.request("GET", url)).status_code
            except httpx.ConnectError as exc:
                outcomes[name] = str(exc)
            await http.aclose()
    assert outcomes["ca_bundle"] == outcomes["unverified"] == 200
    assert "CERTIFICATE_VERIFY_FAILED" in str(outcomes["default"])


# ---- the shortcuts, held equal to httpx's own forms --------------------------------------------


@pytest.mark.parametrize(
    ("method", "content", "headers"),
    [
        ("GET", None, {"Authorization": "Bearer t"}),
        ("DELETE", None, None),
        ("PUT", b'{"state": 1}', {"Content-Type": "application/json", "Authorization": "Bearer t"}),
        ("POST", None, {"Authorization": "Thing k"}),
        ("PATCH", b"", None),
    ],
)
async def test_framed_requests_equal_httpx_content_form(
    method: str, content: bytes | None, headers: dict[str, str] | None
) -> None:
    http = Http(httpx.MockTransport(lambda r: httpx.Response(200)), 3.0)
    url = httpx.URL("https://bootstrap.example.com:8443/prefix/things/configs/a%2Fb")
    fast = http._framed(method, url, content, headers)
    public = httpx.Request(
        method, url, content=content, headers={"User-Agent": "supermq-reactor", **(headers or {})}
    )
    assert (fast.method, fast.url, fast.headers.raw) == (public.method, public.url, public.headers.raw)
    assert await fast.aread() == await public.aread()


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (200, [(b"Content-Length", b"0")], b""),
        (201, [(b"Content-Type", b"application/json"), (b"Content-Length", b"11")], b'{"id":"x1"}'),
        (
            200,
            [(b"Transfer-Encoding", b"chunked"), (b"Content-Type", b"text/plain; charset=latin-1")],
            b"\xe9t\xe9",
        ),
        (200, [(b"Content-Encoding", b"gzip")], gzip.compress(b"zipped")),
    ],
)
async def test_read_responses_equal_httpx_content_form(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    assert tr.response is tr._response_read  # httpx still has what the shortcut sets
    request = httpx.Request("GET", "http://example.com/")
    encoded = any(name.lower() == b"content-encoding" for name, _ in headers)  # as the connection says
    fast = (tr._response_public if encoded else tr.response)(status, headers, body, request)
    public = tr._response_public(status, headers, body, request)
    for attr in ("status_code", "content", "text", "is_closed", "is_stream_consumed", "encoding"):
        assert getattr(fast, attr) == getattr(public, attr), attr
    assert fast.headers.get("content-type") == public.headers.get("content-type")
    assert await fast.aread() == await public.aread()


@pytest.mark.parametrize(
    "base",
    [
        "http://127.0.0.1:9013",
        "http://localhost:9013/",
        "https://user@supermq.example.com/bootstrap/",
        "https://[::1]:8443/api?x=1",
        "http://EXAMPLE.com:80",
    ],
)
@pytest.mark.parametrize(
    ("path", "query"), [("/things/state/a%2Fb", None), ("/configs", "offset=0&limit=10")]
)
def test_joined_urls_equal_httpx_parsed(base: str, path: str, query: str | None) -> None:
    parsed = httpx.URL(base)
    fast, reference = _join_fast(parsed, path, query), _join_parsed(parsed, path, query)
    assert fast == reference
    assert str(fast) == str(reference)
    assert (fast.netloc, fast.raw_path) == (reference.netloc, reference.raw_path)


@pytest.mark.parametrize("choice", ["http1", "httpx"])
async def test_both_transports_serve_the_client_against_the_simulator(sim: Simulator, choice: str) -> None:
    """``supermq.transport``: ours by default, httpx's own on request; the same answers."""
    thing = sim.state.add_thing("dev")
    sim.state.add_config(thing, "ext", "key", [], '{"a": 1}')
    client = SuperMQClient(sim.settings(transport=choice))
    expected = Http1Transport if choice == "http1" else GuardedTransport
    assert isinstance(client.http.transport, expected)
    config = await client.view_config(thing.id)
    await client.change_state(thing.id, 1)
    page = await client.list_configs(limit=10)
    await client.aclose()
    assert config.content == '{"a": 1}'
    assert sim.state.configs[thing.id].state == 1
    assert [c.thing_id for c in page.configs] == [thing.id]


async def test_a_waiter_cancelled_after_its_wake_up_passes_it_on() -> None:
    """Pool of one: B and C queue; the slot frees and wakes B, whose task is cancelled before it
    runs; C must get the slot rather than wait for a wake-up that was spent."""
    pool = tr._Pool(1, keepalive_s=15.0)
    request = httpx.Request("GET", "http://127.0.0.1/")
    origin = ("http", "127.0.0.1", 80)
    assert await pool.acquire(origin, None, request) is None  # the only slot, reserved
    b = asyncio.create_task(pool.acquire(origin, None, request))
    c = asyncio.create_task(pool.acquire(origin, None, request))
    while len(pool._waiters) < 2:
        await asyncio.sleep(0)
    pool.discard(None)  # the slot frees: B is woken ...
    b.cancel()  # ... and cancelled before it runs
    assert await asyncio.wait_for(c, 1.0) is None  # C got the slot
    assert b.cancelled()
    assert pool.open == 1


async def test_the_keep_alive_retry_takes_a_new_connection_not_another_idle_one(
    transport: Http1Transport,
) -> None:
    seen: list[bytes] = []

    async def one_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        await asyncio.sleep(0.05)  # both first requests in flight at once: two connections
        writer.write(OK)
        await writer.drain()
        seen.append(await read_request(reader))  # then closed unanswered

    async with Server(one_then_hang_up) as server:
        await asyncio.gather(call(transport, "GET", server.url()), call(transport, "GET", server.url()))
        assert server.connections == 2
        answer = await call(transport, "GET", server.url())
        assert answer.status_code == 200
    assert server.connections == 3  # the retry opened one; the other idle connection was not tried
    assert len(seen) == 4  # 2 first requests, 1 on the stale connection, 1 on the new one


async def test_a_streamed_request_body_goes_chunked(either: httpx.AsyncBaseTransport) -> None:
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(OK)
        await writer.drain()

    async def parts() -> AsyncIterator[bytes]:
        yield b"hello, "
        yield b"world"

    async with Server(handler) as server:
        request = httpx.Request("POST", server.url(), content=parts(), extensions={"timeout": _timeout()})
        answer = await either.handle_async_request(request)
    assert answer.status_code == 200
    head, _, body = received[0].partition(b"\r\n\r\n")
    assert b"\r\ntransfer-encoding: chunked" in head.lower()
    assert body.endswith(b"0\r\n\r\n")
    chunks, size = [], -1
    rest = body
    while size != 0:  # the chunks carry the whole body, whatever their sizes
        line, _, rest = rest.partition(b"\r\n")
        size = int(line, 16)
        chunks.append(rest[:size])
        rest = rest[size + 2 :]
    assert b"".join(chunks) == b"hello, world"


async def test_closing_the_transport_mid_exchange_leaves_no_connection_open() -> None:
    gate = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            await gate.wait()
            writer.write(OK)
            await writer.drain()

    transport = Http1Transport()
    async with Server(slow) as server:
        flying = asyncio.create_task(call(transport, "GET", server.url()))
        while transport.open_connections == 0:
            await asyncio.sleep(0.01)
        await transport.aclose()  # the daemon stopping while a call is out
        gate.set()
        assert (await flying).status_code == 200  # the call still ends
    assert transport.open_connections == 0  # and its connection was closed, not pooled
