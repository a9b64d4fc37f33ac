"""Hostile and slow answers to the generic ``http.request`` client (httpx's own transport, built
as the daemon builds it: ``build_external_http``) and the whole-exchange deadline on both
transports (issue 19): bodies bounded on the wire and once decoded, read as they come (never
whole), and a server dripping a byte at a time cut
off by ``supermq.deadline_s``."""

from __future__ import annotations

import asyncio
import time
import zlib

import httpx
import pytest

from reactor.actions.base import ActionContext
from reactor.actions.http import HttpParams, HttpRequest
from reactor.errors import RetryableError
from reactor.settings import SuperMQSettings
from reactor.supermq import http as http_module
from reactor.supermq.http import Http, build_external_http, build_http
from tests.supermq.test_http_action_hostile import EVENT
from tests.supermq.test_transport import Server, keep_alive, read_request

LIMIT = 1 << 20
CTX = ActionContext(event=EVENT, rule="r", action_id="a", results={})


def _external(monkeypatch: pytest.MonkeyPatch, **settings: float) -> Http:
    monkeypatch.setattr(http_module, "MAX_BODY", LIMIT)
    return build_external_http(SuperMQSettings(timeout_s=5.0, **settings))


async def _get(client: Http, url: str) -> dict[str, object]:
    action = HttpRequest(client, ["127.0.0.1"])
    return await action.run(HttpParams(url=url, method="GET"), CTX)


def _packed(data: bytes, coding: str) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31 if coding == "gzip" else 15)
    return packer.compress(data) + packer.flush()


async def test_an_answer_over_max_body_is_refused_naming_the_action(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"x" * (LIMIT + 1)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    client = _external(monkeypatch)
    async with Server(keep_alive(answer)) as server:
        with pytest.raises(RetryableError) as refused:
            await _get(client, server.url("/big"))
    message = str(refused.value)
    assert f"http.request GET {server.url('/big')}" in message, message
    assert f"over {LIMIT} bytes" in message, message
    await client.aclose()


async def test_an_endless_answer_is_cut_off_at_the_bound_not_read_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A chunked answer that never ends: refused once past the bound, long before the deadline
    (read whole, it would grow until the server stops)."""
    sent = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
        while True:
            writer.write(chunk)
            sent += 65536
            await writer.drain()

    client = _external(monkeypatch, deadline_s=60.0)
    async with Server(handler) as server:
        async with asyncio.timeout(20):
            with pytest.raises(RetryableError, match=f"over {LIMIT} bytes"):
                await _get(client, server.url("/endless"))
    assert sent < 64 * LIMIT
    await client.aclose()


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_compressed_answer_is_bounded_once_decoded(
    monkeypatch: pytest.MonkeyPatch, coding: str
) -> None:
    bomb = _packed(b"\0" * (64 << 20), coding)  # some 64 KiB on the wire, 64 MiB unpacked
    assert len(bomb) < LIMIT
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
    client = _external(monkeypatch)
    async with Server(keep_alive(head % (coding.encode(), len(bomb)) + bomb)) as server:
        with pytest.raises(RetryableError) as refused:
            await _get(client, server.url("/bomb"))
    assert f"over {LIMIT} bytes once decoded" in str(refused.value)
    assert "http.request GET" in str(refused.value)
    fine = _packed(b'{"ok": true}', coding)
    async with Server(keep_alive(head % (coding.encode(), len(fine)) + fine)) as server:
        answer = await _get(client, server.url("/fine"))
    assert answer == {"status": 200, "body": {"ok": True}}
    await client.aclose()


def _drip() -> Server:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        while True:  # a byte at a time, each well within the per-read timeout
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.1)

    return Server(handler)


@pytest.mark.parametrize("build", ["http1", "httpx", "external"])
async def test_a_dripping_answer_is_cut_off_at_the_deadline(build: str) -> None:
    settings = SuperMQSettings(
        transport="httpx" if build == "httpx" else "http1", timeout_s=1.0, deadline_s=1.5
    )
    client = build_external_http(settings) if build == "external" else build_http(settings)
    async with _drip() as server:
        started = time.monotonic()
        async with asyncio.timeout(10):
            with pytest.raises(httpx.ReadTimeout, match="deadline_s"):
                await client.request("GET", httpx.URL(server.url("/drip")))
    assert 1.4 < time.monotonic() - started < 5.0  # a 1,000-byte drip would take 100 s
    await client.aclose()


async def test_the_deadline_becomes_a_clear_retryable_error_naming_the_action() -> None:
    client = build_external_http(SuperMQSettings(timeout_s=1.0, deadline_s=1.0))
    async with _drip() as server:
        with pytest.raises(RetryableError) as refused:
            await _get(client, server.url("/drip"))
    assert f"http.request GET {server.url('/drip')}: timed out (ReadTimeout)" in str(refused.value)
    await client.aclose()
