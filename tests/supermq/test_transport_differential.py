"""Differential: the reactor's connection (llhttp through httptools) against h11 (httpx's own
parser) on a corpus of raw answers: Content-Length, chunked, close-delimited, interim answers,
trailers and malformed ones. Each answer is served over loopback by a server that then closes;
h11 reads the same bytes (in 4 KiB pieces, then the end). Both must give the same status, headers
and body, or both refuse. The proxy path's answers to CONNECT too (tunnel.ConnectAnswer against
h11 after a CONNECT request): the same status and headers, the same bytes left after a 2xx head,
both waiting for more, or both refusing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import h11
import httpx
import pytest

from reactor.supermq.connection import MAX_HEAD
from reactor.supermq.transport import Http1Transport
from reactor.supermq.tunnel import ConnectAnswer
from tests.supermq.test_transport import Server, read_request

Outcome = tuple[int, list[tuple[bytes, bytes]], bytes] | str


def _corpus() -> dict[str, bytes]:
    ok = b"HTTP/1.1 200 OK\r\n"
    body = b'{"id": "x1", "state": 1}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:5], body[5:], b"!")) + b"0\r\n\r\n"
    return {
        "content-length": ok + b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
        "content-length empty": ok + b"Content-Length: 0\r\n\r\n",
        "content-length leading zeros": ok + b"Content-Length: 0003\r\n\r\nabc",
        "chunked": ok + b"Transfer-Encoding: chunked\r\n\r\n" + chunked,
        "chunked upper-case": ok + b"Transfer-Encoding: CHUNKED\r\n\r\n" + chunked,
        "chunked with extension": ok + b"Transfer-Encoding: chunked\r\n\r\n3;name=v\r\nabc\r\n0\r\n\r\n",
        "chunked with trailers": ok
        + b"Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n3\r\nabc\r\n0\r\n"
        + b"Content-Type: evil\r\nX-T: 1\r\n\r\n",
        "chunked hex upper": ok + b"Transfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
        "close-delimited 1.1": ok + b"Content-Type: text/plain\r\n\r\nuntil the end",
        "close-delimited 1.0": b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
        "interim then final": b"HTTP/1.1 100 Continue\r\n\r\n" + ok + b"Content-Length: 1\r\n\r\nz",
        "two interims": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        + ok
        + b"Content-Length: 1\r\n\r\nz",
        "204 no body": b"HTTP/1.1 204 No Content\r\n\r\n",
        "304 with length": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        "no reason phrase": b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok",
        "many headers": ok
        + b"".join(b"X-%d: v%d\r\n" % (i, i) for i in range(200))
        + b"Content-Length: 0\r\n\r\n",
        "repeated header": ok + b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
        "value with inner spaces": ok + b"X-A:   spaced  value  \r\nContent-Length: 0\r\n\r\n",
        "header block near 8 KiB": ok + b"X-Pad: " + b"p" * 8000 + b"\r\nContent-Length: 0\r\n\r\n",
        "connection close": ok + b"Connection: close\r\nContent-Length: 2\r\n\r\nok",
        "error status": b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
        # malformed: both must refuse
        "garbage status line": b"HTTP/1.1 abc\r\n\r\n",
        "not http": b"SSH-2.0-OpenSSH_9.6\r\n",
        "status two digits": b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
        "http/2 status line": b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
        "space before colon": ok + b"Content-Length : 2\r\n\r\nok",
        "header without colon": ok + b"X-Broken\r\nContent-Length: 0\r\n\r\n",
        "two different content-lengths": ok + b"Content-Length: 2\r\nContent-Length: 5\r\n\r\nokabc",
        "content-length not a number": ok + b"Content-Length: 2x\r\n\r\nok",
        "content-length negative": ok + b"Content-Length: -1\r\n\r\n",
        "content-length and chunked": ok
        + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "short body": ok + b"Content-Length: 10\r\n\r\nabc",
        "chunk size not hex": ok + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "chunk size overflow": ok + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\nabc\r\n",
        "chunk missing CRLF": ok + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        "chunked cut short": ok + b"Transfer-Encoding: chunked\r\n\r\n5\r\nab",
        "chunked no last chunk": ok + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        "head cut short": ok + b"Content-Le",
        "nothing at all": b"",
        "NUL in a header value": ok + b"X-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
        "header block over the bound": ok
        + b"X-Pad: "
        + b"p" * (MAX_HEAD * 4)
        + b"\r\nContent-Length: 0\r\n\r\n",
        "100,001 headers": ok + b"X: y\r\n" * 100_001 + b"Content-Length: 0\r\n\r\n",
    }


CORPUS = _corpus()
#: Where ours is stricter than h11, on purpose: each refused by ours, with the reason.
STRICTER = {
    # RFC 9112 6.1: "ought to be handled as an error" (a request smuggling / response splitting sign)
    "content-length and chunked": "Transfer-Encoding can't be present with Content-Length",
}


def _normal(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Names lower-cased; framing values too (h11 lower-cases them; their case means nothing)."""
    framing = (b"transfer-encoding", b"connection")
    return [(n.lower(), v.lower() if n.lower() in framing else v) for n, v in headers]


def _pieces(raw: bytes) -> list[bytes]:
    """``raw`` in 4 KiB pieces, as both parsers read it."""
    return [raw[i : i + 4096] for i in range(0, len(raw), 4096)]


def h11_outcome(raw: bytes) -> Outcome:
    """What h11 reads from ``raw`` followed by the end of the connection."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    status, headers, body = 0, [], b""
    try:
        for piece in [*_pieces(raw), b""]:
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Response):
                    status, headers = event.status_code, _normal(list(event.headers))
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    return status, headers, body
                elif isinstance(event, h11.ConnectionClosed):
                    return "refused: closed before the end"
    except h11.RemoteProtocolError as exc:
        return f"refused: {exc}"
    return "refused: no complete answer"


@pytest.fixture
async def served() -> AsyncIterator[Server]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        name = request.split(b" ")[1].decode()[1:].replace("_", " ")
        writer.write(CORPUS[name])
        await writer.drain()

    async with Server(handler) as server:
        yield server


async def ours(server: Server, name: str) -> Outcome:
    transport = Http1Transport()
    request = httpx.Request(
        "GET",
        server.url("/" + name.replace(" ", "_")),
        extensions={"timeout": {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}},
    )
    try:
        answer = await transport.handle_async_request(request)
        return answer.status_code, _normal(answer.headers.raw), answer.content
    except httpx.RemoteProtocolError as exc:
        return f"refused: {exc}"
    finally:
        await transport.aclose()


@pytest.mark.parametrize("name", list(CORPUS))
async def test_our_parse_equals_h11s_or_both_refuse(served: Server, name: str) -> None:
    mine, theirs = await ours(served, name), h11_outcome(CORPUS[name])
    if name in STRICTER:
        assert isinstance(mine, str), mine
        assert STRICTER[name] in mine
        assert not isinstance(theirs, str), f"h11 refuses it too now ({theirs}): not stricter any more"
    elif isinstance(theirs, str):
        assert isinstance(mine, str), f"h11 {theirs}; ours accepted {mine!r}"
    else:
        assert mine == theirs


# ---- the proxy path: answers to CONNECT (tunnel.ConnectAnswer) against h11's ------------------


def _connect_corpus() -> dict[str, bytes]:
    ok = b"HTTP/1.1 200 Connection established\r\n"
    return {
        "200": ok + b"\r\n",
        "200 HTTP/1.0": b"HTTP/1.0 200 Connection established\r\n\r\n",
        "200 with headers": ok + b"Proxy-Agent: squid/6\r\nVia: 1.1 p\r\n\r\n",
        "200 no reason phrase": b"HTTP/1.1 200 \r\n\r\n",
        "204": b"HTTP/1.1 204 No Content\r\n\r\n",
        "200 with content-length (no body all the same)": ok + b"Content-Length: 10\r\n\r\n",
        "200 with chunked (no body all the same)": ok + b"Transfer-Encoding: chunked\r\n\r\n",
        "interim then 200": b"HTTP/1.1 100 Continue\r\n\r\n" + ok + b"\r\n",
        "200 then tunnel bytes": ok + b"\r\n\x16\x03\x01\x00\x05hello",
        "value with inner spaces": ok + b"X-A:   spaced  value  \r\n\r\n",
        "header block near 8 KiB": ok + b"X-Pad: " + b"p" * 8000 + b"\r\n\r\n",
        "407 with a body": b"HTTP/1.1 407 Proxy Authentication Required\r\n"
        + b'Proxy-Authenticate: Basic realm="p"\r\nContent-Length: 5\r\n\r\nnope!',
        "502": b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
        "403 close-delimited": b"HTTP/1.1 403 Forbidden\r\n\r\nno tunnel for you",
        # incomplete: both wait for more (the tunnel refuses it when the proxy closes)
        "head cut short": ok + b"Proxy-Agent: sq",
        "nothing at all": b"",
        # malformed: both must refuse
        "garbage status line": b"HTTP/1.1 abc\r\n\r\n",
        "not http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        "status two digits": b"HTTP/1.1 20 OK\r\n\r\n",
        "http/2 status line": b"HTTP/2 200 OK\r\n\r\n",
        "space before colon": ok + b"Proxy-Agent : x\r\n\r\n",
        "header without colon": ok + b"X-Broken\r\n\r\n",
        "NUL in a header value": ok + b"X-A: a\x00b\r\n\r\n",
        "content-length not a number": ok + b"Content-Length: 2x\r\n\r\n",
        "header block over the bound": ok + b"X-Pad: " + b"p" * (MAX_HEAD * 4) + b"\r\n\r\n",
        "header never ending": ok + b"X-Pad: " + b"p" * (MAX_HEAD * 4),
        "100,001 headers": ok + b"X: y\r\n" * 100_001 + b"\r\n",
    }


CONNECT_CORPUS = _connect_corpus()
#: (status, headers, the bytes after a 2xx head or None), "waiting" for more, or "refused: ...".
ConnectOutcome = tuple[int, list[tuple[bytes, bytes]], bytes | None] | str


def h11_connect_outcome(raw: bytes) -> ConnectOutcome:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="CONNECT", target="example.com:443", headers=[("Host", "example.com:443")]))
    conn.send(h11.EndOfMessage())
    try:
        for piece in _pieces(raw):
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Response):
                    status, headers = event.status_code, _normal(list(event.headers))
                    if not 200 <= status < 300:
                        return status, headers, None
                    assert conn.next_event() is h11.PAUSED  # the tunnel: h11 reads no further
                    return status, headers, conn.trailing_data[0]
    except h11.RemoteProtocolError as exc:
        return f"refused: {exc}"
    return "waiting"


def our_connect_outcome(raw: bytes) -> ConnectOutcome:
    """As the tunnel reads it: the bytes so far, piece by piece."""
    reader = ConnectAnswer()
    try:
        for piece in _pieces(raw):
            answer = reader.feed(piece)
            if answer is not None:
                status, headers, rest = answer
                return status, _normal(headers), rest if 200 <= status < 300 else None
    except httpx.ProxyError as exc:
        return f"refused: {exc}"
    return "waiting"


@pytest.mark.parametrize("name", list(CONNECT_CORPUS))
def test_our_connect_answer_parse_equals_h11s_or_both_refuse(name: str) -> None:
    mine, theirs = our_connect_outcome(CONNECT_CORPUS[name]), h11_connect_outcome(CONNECT_CORPUS[name])
    if isinstance(theirs, str) and theirs.startswith("refused"):
        assert isinstance(mine, str), f"h11 {theirs}; ours gave {mine!r}"
        assert mine.startswith("refused"), f"h11 {theirs}; ours {mine}"
    else:
        assert mine == theirs
