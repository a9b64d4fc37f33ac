"""HTTP plumbing for SuperMQ's APIs: httpx requests and responses on our HTTP/1.1 transport.

Errors are translated here, at the boundary: a transport error or timeout, HTTP 429 (with its
Retry-After) and 5xx become ``RetryableError``; any other 4xx becomes ``PermanentError``; both
carry the status and SuperMQ's ``{"error","message"}`` text.

Requests go straight to an httpx transport (``Http``), not through ``httpx.AsyncClient``: the
client's cookie jar, auth and redirect machinery cost time on every request (bench/README.md,
"Profiling history") and the reactor needs none of them (it sends its own ``Authorization``,
SuperMQ does not redirect). The transport is ``Http1Transport`` (see transport.py for why),
limited to the configured SuperMQ services, or, with ``supermq.transport = "httpx"``, httpx's
own, guarded against answers glued to the next exchange (httpx_guard.py). The generic
``http.request`` action has its own client on httpx's transport (``build_external_http``),
bounded here as ours bounds itself (answers read as they come within ``MAX_BODY``, decoded within
it too) and without keep-alive. Every exchange has ``supermq.deadline_s`` in all. A proxy
(``supermq.proxy``, or the environment's HTTP(S)_PROXY, ALL_PROXY, NO_PROXY: proxies.py) is
taken by each client's own transport: ours through tunnel.py, httpx's through its proxy support.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import h11
import httpx
from pydantic import BaseModel, ValidationError

from reactor.errors import AmbiguousError, PermanentError, RetryableError
from reactor.settings import SuperMQSettings
from reactor.supermq.httpx_guard import GuardedTransport, failed_in_connect, guarded_limits
from reactor.supermq.proxies import ProxyRoutes, environment_proxies
from reactor.supermq.transport import MAX_BODY, Http1Transport, decoded, response

JSON_HEADERS = {"Content-Type": "application/json"}
_AGENT = {"User-Agent": "supermq-reactor"}
_AGENT_RAW = (b"User-Agent", _AGENT["User-Agent"].encode())
M = TypeVar("M", bound=BaseModel)


def _join_parsed(base: httpx.URL, path: str, query: str | None) -> httpx.URL:
    """``base`` + an escaped path (+ query) through httpx's parser: the reference join."""
    raw = base.raw_path.split(b"?", 1)[0].rstrip(b"/") + path.encode("ascii")
    return base.copy_with(raw_path=raw + (b"?" + query.encode("ascii") if query else b""))


def _join_fast(base: httpx.URL, path: str, query: str | None) -> httpx.URL:
    """The same URL without parsing the whole of it again (a third of httpx.Request's cost):
    the base's parsed parts with another path and query. It leans on httpx's ``_uri_reference``;
    ``join`` checks it against ``_join_parsed`` at import and falls back if httpx changes."""
    url = httpx.URL.__new__(httpx.URL)
    ref = base._uri_reference
    url._uri_reference = ref._replace(path=ref.path.rstrip("/") + path, query=query, fragment=None)
    return url


def _pick_join() -> Any:
    base = httpx.URL("https://user@example.com:8443/prefix/?x=1")
    for path, query in (("/things/a%2Fb", None), ("/configs", "offset=0&limit=10")):
        try:
            same = _join_fast(base, path, query) == _join_parsed(base, path, query)
        except (AttributeError, TypeError, ValueError):
            same = False
        if not same:
            return _join_parsed
    return _join_fast


#: ``join(base, path, query)``: a service's base URL + an escaped path and query.
join = _pick_join()


class Http:
    """httpx requests sent straight to an httpx transport, each read whole and closed.

    ``deadline_s``: the whole exchange's limit (a server dripping a byte a second never trips the
    per-read ``timeout_s``). ``max_body``: read the answer here, raw bytes counted as they come and
    decoded within the bound (for httpx's transport, which reads and unpacks any size; ours
    bounds its answers itself)."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        timeout_s: float,
        deadline_s: float | None = None,
        max_body: int | None = None,
    ) -> None:
        self.transport = transport
        self._timeout: dict[str, float | None] = httpx.Timeout(timeout_s).as_dict()
        self._deadline_s = deadline_s
        if deadline_s is not None and getattr(transport, "checks_deadline", False):
            # ours checks it with the read timer it runs anyway: no asyncio.timeout per request
            # (7 us of a 44 us request here); httpx's transport gets the timeout below
            self._timeout["deadline"] = deadline_s
            self._deadline_s = None
        self._max_body = max_body

    async def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        if params is None and json is None and isinstance(url, httpx.URL):
            request = self._framed(method, url, content, headers)
        else:
            request = httpx.Request(
                method,
                url,
                content=content,
                headers={**_AGENT, **headers} if headers else _AGENT,
                params=params,
                json=json,
                extensions={"timeout": self._timeout},
            )
        if self._deadline_s is None:
            return await self._exchange(request)
        limit = asyncio.timeout(self._deadline_s)
        try:
            async with limit:
                return await self._exchange(request)
        except TimeoutError:
            if not limit.expired():
                raise
            raise httpx.ReadTimeout(
                f"no whole answer within supermq.deadline_s ({self._deadline_s:g}s)", request=request
            ) from None

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        try:
            answer = await self.transport.handle_async_request(request)
        except h11.LocalProtocolError as exc:  # httpcore lets h11's escape while sending a body
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        try:
            if self._max_body is not None:
                return await _read_bounded(answer, request, self._max_body)
            await answer.aread()
        finally:
            await answer.aclose()
        return answer

    def _framed(
        self, method: str, url: httpx.URL, content: bytes | None, headers: Mapping[str, str] | None
    ) -> httpx.Request:
        """The request in httpx's ``stream=`` form, where httpx adds no header: Host and
        Content-Length are set here as ``content=`` would set them (half the cost of building
        the request; a test holds both forms equal)."""
        body = content or b""
        raw = [(b"Host", url.netloc)]
        if not body and method in ("POST", "PUT", "PATCH"):
            raw.append((b"Content-Length", b"0"))
        raw.append(_AGENT_RAW)
        if headers:
            raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if body:
            raw.append((b"Content-Length", b"%d" % len(body)))
        return httpx.Request(
            method, url, headers=raw, stream=httpx.ByteStream(body), extensions={"timeout": self._timeout}
        )

    async def aclose(self) -> None:
        await self.transport.aclose()


async def _read_bounded(answer: httpx.Response, request: httpx.Request, limit: int) -> httpx.Response:
    """The answer read from its raw stream, never past ``limit`` bytes on the wire nor once
    decoded (``transport.decoded``), as a read, closed response without its Content-Encoding."""
    body = bytearray()
    async for chunk in answer.stream:  # type: ignore[union-attr]  # raw bytes, still encoded
        body += chunk
        if len(body) > limit:
            raise httpx.RemoteProtocolError(f"answer body over {limit} bytes", request=request)
    headers = answer.headers.raw
    if not any(name.lower() == b"content-encoding" for name, _ in headers):
        return response(answer.status_code, headers, bytes(body), request)
    try:
        data = decoded(headers, bytes(body), limit)
    except httpx.DecodingError as exc:
        raise httpx.DecodingError(str(exc), request=request) from None
    plain = [(n, v) for n, v in headers if n.lower() not in (b"content-encoding", b"content-length")]
    return response(answer.status_code, plain, data, request)


def _verify(settings: SuperMQSettings) -> ssl.SSLContext | bool:
    if settings.verify_tls and settings.ca_bundle:
        return ssl.create_default_context(cafile=settings.ca_bundle)
    return settings.verify_tls


def _httpx_transport(
    settings: SuperMQSettings, proxy: str | None, *, keep_alive: bool = True
) -> httpx.AsyncBaseTransport:
    """httpx's own transport; kept-alive connections guarded against glued answers
    (httpx_guard.py), or none kept alive at all (``http.request``'s)."""
    limits = guarded_limits(settings.max_connections, settings.keepalive_s, keep_alive=keep_alive)
    verify = _verify(settings)
    via: httpx.Proxy | None = None
    if proxy:
        # an https:// proxy verified with the same trust as the services (httpcore's default: the system's)
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        https = urlsplit(proxy).scheme.lower() == "https"
        via = httpx.Proxy(proxy, ssl_context=context if https else None)
    inner = httpx.AsyncHTTPTransport(verify=verify, limits=limits, proxy=via)
    return GuardedTransport(inner) if keep_alive else inner


def origin_of(url: str | httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) as the transport names an origin."""
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80)


def build_http(settings: SuperMQSettings, origins: Iterable[str] | None = None) -> Http:
    """The shared HTTP client: pooled, TLS verified unless switched off, bounded by a timeout.
    ``origins``: the URLs of the only services the reactor's own transport may call. A proxy
    (``supermq.proxy`` for every call, else the environment's for the URLs it covers) is taken
    by the chosen transport itself: ours (tunnel.py) or httpx's."""
    allowed = None if origins is None else frozenset(origin_of(u) for u in origins)

    def make(proxy: str | None) -> httpx.AsyncBaseTransport:
        if settings.transport == "httpx":
            return _httpx_transport(settings, proxy)
        return Http1Transport(
            verify=_verify(settings),
            max_connections=settings.max_connections,
            keepalive_s=settings.keepalive_s,
            origins=allowed,
            proxy=proxy,
        )

    if settings.proxy:
        transport = make(settings.proxy)
    else:
        found = environment_proxies()
        transport = ProxyRoutes(make(None), found, make) if found else make(None)
    return Http(transport, settings.timeout_s, settings.deadline_s)


def build_external_http(settings: SuperMQSettings) -> Http:
    """The client of the generic ``http.request`` action (any allowlisted host): httpx's own
    transport, whatever ``supermq.transport`` says; ours serves only the SuperMQ services.

    Bounded as ours is: ``MAX_BODY`` on the wire and once decoded, ``deadline_s`` for the whole
    exchange. No keep-alive: an allowlisted host is not a configured SuperMQ service, and a
    connection per call carries nothing from one exchange to the next (no glued answer, whether
    or not httpx_guard can see httpcore's leftover bytes)."""

    def direct(proxy: str | None) -> httpx.AsyncBaseTransport:
        return _httpx_transport(settings, proxy, keep_alive=False)

    transport: httpx.AsyncBaseTransport = direct(settings.proxy or None)
    if not settings.proxy:
        found = environment_proxies()
        transport = ProxyRoutes(transport, found, direct) if found else transport
    return Http(transport, settings.timeout_s, settings.deadline_s, MAX_BODY)


def _message(response: httpx.Response) -> str:
    """SuperMQ's error body ``{"error","message"}`` as one line, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "message") if body.get(k)]
        if parts:
            return ": ".join(parts)
    return response.text[:200]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


#: Failures before the request left: nothing reached the server.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.LocalProtocolError,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
)
#: Methods that change nothing: their failure is never ambiguous.
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


async def send(http: Http, method: str, url: str | httpx.URL, what: str, **kwargs: Any) -> httpx.Response:
    """One HTTP call; a transport error or timeout becomes ``RetryableError`` (the status is checked by
    ``raise_for``), ``AmbiguousError`` when a request that changes something may have reached the
    server (no answer in time, the connection lost after sending). Every HTTP call of the reactor
    goes through here."""
    try:
        return await http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise _transport_error(exc, method, what) from exc


def _transport_error(exc: httpx.HTTPError, method: str, what: str) -> RetryableError:
    text = (
        f"timed out ({type(exc).__name__})"
        if isinstance(exc, httpx.TimeoutException)
        else f"{type(exc).__name__}: {exc}"
    )
    if method in _SAFE or isinstance(exc, _NOT_SENT) or failed_in_connect(exc):
        return RetryableError(f"{what}: {text}")
    return AmbiguousError(f"{what}: {text}; the request may have reached the server")


def parse(model: type[M], response: httpx.Response, what: str) -> M:
    """The answer as a typed model; an unexpected shape is a ``PermanentError``."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise PermanentError(
            f"{what}: unexpected answer from SuperMQ: {exc.errors()[0]['msg']}", status=response.status_code
        ) from exc


def raise_for(response: httpx.Response, what: str) -> None:
    """Translate a non-2xx answer into the error taxonomy."""
    status = response.status_code
    if status < 300:
        return
    text = f"{what}: HTTP {status}: {_message(response)}"
    if status == 429:
        raise RetryableError(text, status=status, retry_after_s=_retry_after(response))
    if status >= 500:
        raise RetryableError(text, status=status, retry_after_s=_retry_after(response))
    raise PermanentError(text, status=status)
