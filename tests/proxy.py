"""A tiny asyncio forward proxy for the tests and the benchmark (``python -m tests.proxy PORT``).

- absolute-form requests (``GET http://host:port/path``) are forwarded in origin form on one
  upstream connection per client connection (requests framed by Content-Length, as the
  reactor's are); the answers are piped back byte for byte, so a hostile answer arrives as sent;
- ``CONNECT host:port`` opens a tunnel: bytes piped both ways; or, with ``terminate`` (a server
  TLS context), the proxy ends the client's TLS itself and pipes the plain bytes to a plain
  upstream, so the same raw servers serve the tests through CONNECT and TLS;
- ``tls``: the proxy is itself ``https://``; ``credentials``: ``Proxy-Authorization: Basic`` is
  required (407 otherwise); ``connect_answer``: what it answers to CONNECT instead (a hostile
  proxy), then it keeps the connection open until the client closes (or, ``hang_up``, closes it).

Every upstream is 127.0.0.1 (the tests' servers listen there), whatever host is named.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import sys
from collections.abc import Coroutine
from typing import Any

from tests.servers import free_port


async def _head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return b""


async def _body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return await reader.readexactly(int(line.split(b":", 1)[1]))
    return b""


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


class ForwardProxy:
    """See the module docstring; counts what it saw."""

    def __init__(
        self,
        *,
        terminate: ssl.SSLContext | None = None,
        tls: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        connect_answer: bytes | None = None,
        hang_up: bool = False,
        port: int | None = None,
    ) -> None:
        self.terminate = terminate
        self.tls = tls
        self.connect_answer = connect_answer
        self.hang_up = hang_up
        self.expected: bytes | None = None
        if credentials is not None:
            self.expected = b"Basic " + base64.b64encode(":".join(credentials).encode())
        self.port = port or free_port()
        self.connections = 0
        self.lines: list[bytes] = []  # request lines as received (absolute form, CONNECT)
        self.forwarded: list[bytes] = []  # heads as sent upstream
        self.authorizations: list[bytes] = []

    def url(self, userinfo: str = "", host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{userinfo + '@' if userinfo else ''}{host}:{self.port}"

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def serve_forever(self) -> None:
        async with self:
            await self._server.serve_forever()

    def _authorized(self, head: bytes, writer: asyncio.StreamWriter) -> bool:
        value = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, rest = line.partition(b":")
            if name.strip().lower() == b"proxy-authorization":
                value = rest.strip()
                self.authorizations.append(value)
        if self.expected is None or value == self.expected:
            return True
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await _head(reader)
            if head:
                self.lines.append(head.split(b"\r\n", 1)[0])
                if self._authorized(head, writer):
                    if head.startswith(b"CONNECT "):
                        await self._tunnel(head, reader, writer)
                    else:
                        await self._forward(head, reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()

    async def _tunnel(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connect_answer is not None:
            writer.write(self.connect_answer)
            await writer.drain()
            if not self.hang_up:
                await reader.read()
            return
        port = int(head.split(b" ", 2)[1].rsplit(b":", 1)[1])
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        if self.terminate is not None:
            await writer.start_tls(self.terminate)
        await self._both_ways(reader, writer, up_reader, up_writer)

    async def _forward(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = head.split(b" ", 2)[1]
        port = int(target.split(b"/", 3)[2].rsplit(b":", 1)[1])
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)

        async def requests() -> None:
            current = head
            while current:
                body = await _body(reader, current)
                up_writer.write(self._origin_form(current) + body)
                await up_writer.drain()
                current = await _head(reader)
                if current:
                    self.lines.append(current.split(b"\r\n", 1)[0])
                    self._authorized(current, writer)

        await self._both_ways(reader, writer, up_reader, up_writer, upstream=requests())

    def _origin_form(self, head: bytes) -> bytes:
        line, _, rest = head.partition(b"\r\n")
        method, target, version = line.split(b" ", 2)
        path = b"/" + target.split(b"/", 3)[3] if target.count(b"/") >= 3 else b"/"
        kept = [h for h in rest.split(b"\r\n") if not h.lower().startswith(b"proxy-authorization:")]
        forwarded = b"%s %s %s\r\n%s" % (method, path, version, b"\r\n".join(kept))
        self.forwarded.append(forwarded)
        return forwarded

    @staticmethod
    async def _both_ways(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        upstream: Coroutine[Any, Any, None] | None = None,
    ) -> None:
        """Pipe until either side closes, then close both."""
        up = asyncio.ensure_future(upstream if upstream is not None else _pipe(reader, up_writer))
        down = asyncio.ensure_future(_pipe(up_reader, writer))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            up_writer.close()


if __name__ == "__main__":
    asyncio.run(ForwardProxy(port=int(sys.argv[1])).serve_forever())
