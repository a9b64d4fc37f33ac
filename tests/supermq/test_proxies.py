"""Proxies named by the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY) are honoured
by every HTTP client the reactor builds, or refused with one line: never silently ignored."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from reactor.errors import ConfigError
from reactor.settings import SuperMQSettings
from reactor.supermq.client import SuperMQClient
from reactor.supermq.proxies import bypassed
from reactor.supermq.transport import Http1Transport
from tests.supermq.test_transport import Server, read_request

_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def answering(text: bytes, seen: list[bytes]) -> Server:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await read_request(reader):
            seen.append(request.split(b"\r\n", 1)[0])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))
            await writer.drain()

    return Server(handler)


def _settings(url: str, transport: str) -> SuperMQSettings:
    return SuperMQSettings(
        transport=transport, **{f"{s}_url": url for s in ("users", "things", "bootstrap", "certs", "http")}
    )


@pytest.mark.parametrize("transport", ["http1", "httpx"])
@pytest.mark.parametrize("no_proxy", ["", "127.0.0.1", "localhost,127.0.0.1:9", "*"])
async def test_environment_proxies_are_honoured_with_no_proxy(
    monkeypatch: pytest.MonkeyPatch, transport: str, no_proxy: str
) -> None:
    via_proxy: list[bytes] = []
    direct: list[bytes] = []
    async with answering(b"proxied", via_proxy) as proxy, answering(b"direct", direct) as server:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("NO_PROXY", no_proxy)
        client = SuperMQClient(_settings(f"http://127.0.0.1:{server.port}", transport))
        try:
            supermq = await client.http.request("GET", httpx.URL(server.url("/things")))
            hook = await client.external_http.request("GET", server.url("/hook"))
        finally:
            await client.aclose()
    expected = b"direct" if no_proxy else b"proxied"
    assert supermq.content == hook.content == expected
    if not no_proxy:  # the absolute form, as a forward proxy is asked
        assert via_proxy == [
            b"GET http://127.0.0.1:%d/things HTTP/1.1" % server.port,
            b"GET http://127.0.0.1:%d/hook HTTP/1.1" % server.port,
        ]
    else:
        assert via_proxy == []
        assert direct == [b"GET /things HTTP/1.1", b"GET /hook HTTP/1.1"]


def test_without_proxy_variables_the_fast_transport_is_unwrapped() -> None:
    client = SuperMQClient(SuperMQSettings())
    assert type(client.http.transport) is Http1Transport


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ALL_PROXY", "socks5://127.0.0.1:1080"),
        ("https_proxy", "socks5h://user:hunter2@127.0.0.1:1080"),
        ("HTTP_PROXY", "ftp://127.0.0.1:21"),
        ("HTTP_PROXY", "socks5://user:hun@ter2@127.0.0.1:1080"),  # an '@' in the password
        ("HTTPS_PROXY", "ftp://user:h@u@nter2@127.0.0.1:21"),
        ("HTTP_PROXY", "http://user:hunter2@127.0.0.1:99999"),  # a port out of range
        ("https_proxy", "user:hunter2@127.0.0.1:65536"),
    ],
)
def test_unusable_proxy_variables_are_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        SuperMQClient(SuperMQSettings())
    message = str(refused.value)
    assert name in message, message
    assert "nter2" not in message, message
    assert "user" not in message, message
    assert "\n" not in message


def test_supermq_proxy_takes_precedence_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")  # would be refused: never read
    client = SuperMQClient(SuperMQSettings(proxy="http://127.0.0.1:3128"))
    assert isinstance(client.http.transport, Http1Transport)  # ours, through the proxy (tunnel.py)
    assert isinstance(client.external_http.transport, httpx.AsyncHTTPTransport)


@pytest.mark.parametrize(
    ("no_proxy", "host", "expected"),
    [
        ("example.com", "api.example.com", True),
        (".example.com", "api.example.com", True),
        ("*.example.com", "example.com", True),
        ("example.com", "badexample.com", False),
        ("10.0.0.1:8080, [::1]", "::1", True),
        ("10.0.0.1:8080", "10.0.0.1", True),
        ("*", "anything", True),
        ("", "anything", False),
    ],
)
def test_no_proxy_matching(monkeypatch: pytest.MonkeyPatch, no_proxy: str, host: str, expected: bool) -> None:
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert bypassed(host) is expected
