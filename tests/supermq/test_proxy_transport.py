"""The SuperMQ clients through a forward proxy (tests/proxy.py, a real one on loopback): the
absolute form with ``Proxy-Authorization`` on kept-alive connections, CONNECT tunnels with TLS
verified as for direct connections, an ``https://`` proxy, hostile answers to CONNECT, and the
proxy's credentials kept out of every message. Both transports, built as the daemon builds them."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from reactor.errors import AmbiguousError, RetryableError
from reactor.settings import SuperMQSettings
from reactor.supermq.connection import MAX_HEAD
from reactor.supermq.http import build_http, send
from reactor.supermq.transport import Http1Transport
from tests.proxy import ForwardProxy
from tests.servers import free_port
from tests.supermq.test_transport import Server, _tls_pair, keep_alive

TRANSPORTS = ["http1", "httpx"]
USER, PASSWORD = "re actor", "hun:ter2@/x"
USERINFO = "re%20actor:hun%3Ater2%40%2Fx"  # as a URL carries them


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A ``localhost`` server certificate made now, and its CA file."""
    return _tls_pair(tmp_path_factory.mktemp("proxy-tls"))


@pytest.fixture
async def origin(tls: tuple[ssl.SSLContext, Path]) -> AsyncIterator[Server]:
    async with Server(keep_alive(), tls=tls[0]) as server:
        yield server


def _settings(transport: str, proxy: str, **extra: object) -> SuperMQSettings:
    return SuperMQSettings(transport=transport, proxy=proxy, timeout_s=3.0, **extra)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_http_targets_go_in_absolute_form_with_basic_auth_kept_alive(transport: str) -> None:
    seen: list[bytes] = []
    async with Server(keep_alive(seen=seen)) as server, ForwardProxy(credentials=(USER, PASSWORD)) as proxy:
        http = build_http(_settings(transport, proxy.url(USERINFO)))
        answers = [await http.request("GET", httpx.URL(server.url(f"/things/{i}"))) for i in range(5)]
        await http.aclose()
    assert [a.status_code for a in answers] == [200] * 5
    assert proxy.lines == [b"GET http://127.0.0.1:%d/things/%d HTTP/1.1" % (server.port, i) for i in range(5)]
    assert proxy.connections == 1  # kept alive to the proxy
    assert len(proxy.authorizations) == 5
    assert set(proxy.authorizations) == {proxy.expected}
    assert len(seen) == 5
    assert not any(b"proxy-authorization" in r.lower() for r in seen)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_https_targets_go_through_connect_verified_as_direct(
    transport: str, origin: Server, tls: tuple[ssl.SSLContext, Path]
) -> None:
    """A CONNECT tunnel, then TLS to the origin over it: its certificate verified by default
    (system CAs: refused), with ``ca_bundle`` (taken), for the origin's name (127.0.0.1 is not
    the certificate's: refused); one tunnel kept alive for several requests."""
    _, ca = tls
    async with ForwardProxy(credentials=(USER, PASSWORD)) as proxy:
        untrusted = build_http(_settings(transport, proxy.url(USERINFO)))
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.request("GET", httpx.URL(origin.url(host="localhost")))
        await untrusted.aclose()
        http = build_http(_settings(transport, proxy.url(USERINFO), ca_bundle=str(ca)))
        answers = [await http.request("GET", httpx.URL(origin.url(host="localhost"))) for _ in range(3)]
        with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|match"):
            await http.request("GET", httpx.URL(origin.url(host="127.0.0.1")))
        await http.aclose()
    assert [a.status_code for a in answers] == [200] * 3
    connects = [line for line in proxy.lines if line.startswith(b"CONNECT localhost")]
    assert connects == [b"CONNECT localhost:%d HTTP/1.1" % origin.port] * 2  # untrusted, then one tunnel
    assert set(proxy.authorizations) == {proxy.expected}


@pytest.mark.parametrize("upper", [False, True], ids=["https", "HTTPS"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_https_proxy_is_spoken_to_over_tls(
    transport: str, upper: bool, origin: Server, tls: tuple[ssl.SSLContext, Path]
) -> None:
    """TLS to the proxy (verified, same trust), then CONNECT and TLS to the origin inside it; and
    an http:// target in absolute form over the TLS connection to the proxy. The scheme in any
    case (before: ``HTTPS://`` on httpx's transport was verified with the system's CAs)."""
    context, ca = tls
    async with ForwardProxy(tls=context) as proxy, Server(keep_alive()) as plain:
        url = proxy.url(host="localhost")
        url = url.replace("https://", "HTTPS://") if upper else url
        http = build_http(_settings(transport, url, ca_bundle=str(ca)))
        secure = await http.request("GET", httpx.URL(origin.url(host="localhost")))
        forwarded = await http.request("GET", httpx.URL(plain.url()))
        await http.aclose()
        untrusted = build_http(_settings(transport, proxy.url(host="localhost")))
        with pytest.raises(httpx.HTTPError):
            await untrusted.request("GET", httpx.URL(plain.url()))
        await untrusted.aclose()
    assert secure.status_code == forwarded.status_code == 200
    assert proxy.lines[:2] == [
        b"CONNECT localhost:%d HTTP/1.1" % origin.port,
        b"GET http://127.0.0.1:%d/x HTTP/1.1" % plain.port,
    ]


_HOSTILE_CONNECT = {
    "refused": (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", False, "HTTP 502"),
    "auth required": (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", False, "HTTP 407"),
    "not http": (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", False, "malformed"),
    "garbage status": (b"HTTP/1.1 abc\r\n\r\n", False, "malformed"),
    "head over the bound": (b"HTTP/1.1 200 OK\r\nX: " + b"p" * (MAX_HEAD * 2) + b"\r\n\r\n", False, "over"),
    "head never ending": (b"HTTP/1.1 200 OK\r\nX: " + b"p" * (MAX_HEAD * 2), False, "over"),
    "bytes past the answer": (b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", False, "past"),
    "closed before answering": (b"", True, "closed"),
    "closed mid-head": (b"HTTP/1.1 200 Connection", True, "closed"),
    "switching protocols": (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", False, "HTTP 101"),
}


@pytest.mark.parametrize("case", list(_HOSTILE_CONNECT))
async def test_a_hostile_answer_to_connect_is_a_proxy_error_not_sent(case: str) -> None:
    """Whatever the proxy answers to CONNECT, other than a clean 2xx head, is refused with
    httpx.ProxyError; the request never left, so even a POST is retryable, not ambiguous."""
    answer, hang_up, reason = _HOSTILE_CONNECT[case]
    async with ForwardProxy(connect_answer=answer, hang_up=hang_up) as proxy:
        transport = Http1Transport(proxy=proxy.url(USERINFO))
        request = httpx.Request("POST", f"https://127.0.0.1:{free_port()}/x", content=b"{}")
        with pytest.raises(httpx.ProxyError, match=reason) as refused:
            await transport.handle_async_request(request)
        assert PASSWORD not in str(refused.value)
        http = build_http(_settings("http1", proxy.url(USERINFO)))
        with pytest.raises(RetryableError) as failed:
            await send(http, "POST", httpx.URL(f"https://127.0.0.1:{free_port()}/x"), "test", content=b"{}")
        assert not isinstance(failed.value, AmbiguousError)
        assert transport.open_connections == 0
        await transport.aclose()
        await http.aclose()


async def test_a_proxy_silent_on_connect_is_a_connect_timeout() -> None:
    async with ForwardProxy(connect_answer=b"") as proxy:
        http = build_http(SuperMQSettings(proxy=proxy.url(), timeout_s=0.3))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RetryableError, match="ConnectTimeout") as failed:
            await send(http, "POST", httpx.URL(f"https://127.0.0.1:{free_port()}/x"), "test", content=b"{}")
        assert loop.time() - started < 3.0
        assert not isinstance(failed.value, AmbiguousError)
        await http.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_proxys_credentials_are_in_no_message(transport: str) -> None:
    closed = free_port()  # nothing listens there
    http = build_http(_settings(transport, f"http://{USERINFO}@127.0.0.1:{closed}"))
    for url in (f"http://127.0.0.1:{closed}/x", f"https://127.0.0.1:{closed}/x"):
        with pytest.raises(RetryableError) as failed:
            await send(http, "POST", httpx.URL(url), "things.create", content=b"{}")
        text = f"{failed.value} {failed.value!r} {failed.value.__cause__!r}"
        for secret in (PASSWORD, "hun%3Ater2", "hun"):
            assert secret not in text, text
    assert "hun" not in repr(getattr(http.transport, "_proxy", None))
    await http.aclose()


async def test_environment_https_proxy_takes_our_transport_through_connect(
    monkeypatch: pytest.MonkeyPatch, origin: Server, tls: tuple[ssl.SSLContext, Path]
) -> None:
    """HTTPS_PROXY for a SuperMQ service on https:// : our transport (not httpx's), through
    CONNECT; NO_PROXY still sends another host direct."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url())
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        http = build_http(SuperMQSettings(ca_bundle=str(tls[1]), timeout_s=3.0))
        route = http.transport.route(httpx.URL(origin.url(host="localhost")))  # type: ignore[attr-defined]
        assert isinstance(route, Http1Transport)
        proxied = await http.request("GET", httpx.URL(origin.url(host="localhost")))
        with pytest.raises(httpx.ConnectError, match="match"):  # direct: 127.0.0.1 is not the cert's name
            await http.request("GET", httpx.URL(origin.url(host="127.0.0.1")))
        await http.aclose()
    assert proxied.status_code == 200
    assert proxy.lines == [b"CONNECT localhost:%d HTTP/1.1" % origin.port]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("answer", [b"", b"HTTP/1.1 100 Continue\r\n\r\n"], ids=["silent", "100 then silent"])
async def test_a_proxy_silent_on_connect_is_not_sent_on_either_transport(
    transport: str, answer: bytes
) -> None:
    """No answer to CONNECT in time (or an interim one, then none): the request never left, so a
    POST is retryable, not ambiguous, on httpx's transport too (before: its ReadTimeout while
    reading the proxy's answer counted as "may have reached the server")."""
    async with ForwardProxy(connect_answer=answer) as proxy:
        http = build_http(SuperMQSettings(transport=transport, proxy=proxy.url(USERINFO), timeout_s=0.3))
        with pytest.raises(RetryableError) as failed:
            await send(http, "POST", httpx.URL(f"https://127.0.0.1:{free_port()}/x"), "test", content=b"{}")
        await http.aclose()
    assert not isinstance(failed.value, AmbiguousError), failed.value
    assert "timed out" in str(failed.value)
    assert PASSWORD not in str(failed.value)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_silence_after_the_tunnel_is_up_stays_ambiguous(
    transport: str, tls: tuple[ssl.SSLContext, Path]
) -> None:
    """The other side of it: through an established tunnel, a POST sent and never answered may
    have reached the server."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    async with Server(silent, tls=tls[0]) as quiet, ForwardProxy() as proxy:
        http = build_http(
            SuperMQSettings(transport=transport, proxy=proxy.url(), timeout_s=0.3, ca_bundle=str(tls[1]))
        )
        with pytest.raises(AmbiguousError):
            await send(http, "POST", httpx.URL(quiet.url(host="localhost")), "test", content=b"{}")
        await http.aclose()


async def test_a_proxy_closing_the_tunnel_during_tls_says_so() -> None:
    """A 2xx to CONNECT, then the proxy hangs up: the TLS handshake fails with an exception that
    has no text; the message says what happened instead of ending in ": " (not sent all the same)."""
    async with ForwardProxy(connect_answer=b"HTTP/1.1 200 OK\r\n\r\n", hang_up=True) as proxy:
        transport = Http1Transport(proxy=proxy.url(USERINFO))
        request = httpx.Request("POST", f"https://127.0.0.1:{free_port()}/x", content=b"{}")
        with pytest.raises(httpx.ConnectError, match=r"closed during the TLS handshake$") as failed:
            await transport.handle_async_request(request)
        await transport.aclose()
    assert PASSWORD not in str(failed.value)
