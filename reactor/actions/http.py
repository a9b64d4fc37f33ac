"""``http.request``: a generic HTTP call, only to hosts on ``supermq.http_allowlist``.

It goes through httpx's own transport (``SuperMQClient.external_http``), not the reactor's, which
serves only the configured SuperMQ services; that client bounds the answer (its size on the wire
and once decoded, the whole exchange's deadline) and keeps no connection alive. The URL is parsed
once, strictly, by the parser whose result is sent (the allowlist is checked on what goes on the
wire, not on another parser's reading of it). Framing and routing headers are the transport's: a
rule cannot set them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator
from typing_extensions import TypeAliasType

from reactor.actions.base import Action, ActionContext, Params
from reactor.errors import PermanentError
from reactor.supermq.http import Http, raise_for, send

_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})
#: Headers that frame the message or route it (RFC 9110 7.2, 7.6.1; RFC 9112 6): never a rule's.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_USERINFO = re.compile(r"//[^/?#]*@")


def shown(url: str) -> str:
    """The URL as a message may show it: any ``user:password@`` masked."""
    return _USERINFO.sub("//***@", url, count=1)


def header_problem(names: Iterable[str]) -> str | None:
    """Why these header names cannot be set by a rule, or None."""
    for name in names:
        if not _TOKEN.fullmatch(name):
            return f"header name {name!r} is not a valid HTTP token"
        if name.lower() in RESERVED_HEADERS:
            return f"header {name!r} frames or routes the request: it is the transport's, not a rule's"
    return None


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    problem = header_problem(headers)
    if problem is None:
        bad = next((n for n, v in headers.items() if any(c in v for c in "\r\n\0")), None)
        problem = None if bad is None else f"header {bad!r}: CR, LF or NUL in its value"
    if problem is not None:
        raise ValueError(problem)
    return headers


def parse_url(text: str) -> httpx.URL:
    """The URL as it will be sent, or ``ValueError`` saying what is wrong with it (spaces or
    control characters anywhere, a backslash, credentials, not http(s), no host, a port out of
    range)."""
    if not text or any(c <= " " or c == "\x7f" for c in text):
        raise ValueError(f"URL {shown(text)!r} has spaces or control characters")
    if "\\" in text:  # parsers disagree on it (WHATWG reads it as '/', RFC 3986 does not)
        raise ValueError(f"URL {shown(text)!r} has a backslash")
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ValueError(f"URL {shown(text)!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"not an http(s) URL with a host: {shown(text)!r}")
    if url.userinfo:
        raise ValueError(
            f"URL {shown(text)!r} carries credentials, which are not sent: use an Authorization header"
        )
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError(f"URL {shown(text)!r}: port {url.port} is out of range (1-65535)")
    return url


def _check_url(text: str) -> str:
    parse_url(text)
    return text


#: Checked whenever the parameter is validated: at rule load when it is a literal, else per event.
Headers = TypeAliasType("Headers", Annotated[dict[str, str], AfterValidator(_check_headers)])
Url = TypeAliasType("Url", Annotated[str, AfterValidator(_check_url)])


class HttpParams(Params):
    url: Url
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: Headers = {}
    json_body: Any = None
    body: str | None = None


class HttpRequest(Action):
    """Call an allowed URL; 429/5xx/transport errors are retried, other 4xx are not."""

    type_name = "http.request"
    params_model = HttpParams
    secret_params = frozenset({"headers"})
    repeatable = False

    def may_repeat(self, params: HttpParams) -> bool:
        """GET, PUT and DELETE are idempotent by HTTP's definition; POST and PATCH are not."""
        return params.method in _IDEMPOTENT

    def check_params(self, raw: Mapping[str, Any]) -> list[str]:
        """Header names are refused at load even when their values are templated."""
        headers = raw.get("headers")
        if isinstance(headers, Mapping):
            problem = header_problem(str(name) for name in headers)
            if problem is not None:
                return [f"{self.type_name}: parameter 'headers': {problem}"]
        return []

    def __init__(self, http: Http | Callable[[], Http], allowlist: list[str]) -> None:
        """``http``: the client, or how to get it on first use (building httpx's transport reads
        the system's CA store, some 20 ms: not for a registry that never runs this action)."""
        self._http: Http | None = http if isinstance(http, Http) else None
        self._get_http = http if not isinstance(http, Http) else None
        self._allow = [a.lower() for a in allowlist]

    def _check(self, text: str) -> httpx.URL:
        try:
            url = parse_url(text)
        except ValueError as exc:
            raise PermanentError(f"http.request: {exc}") from None
        if not any(fnmatchcase(url.host, pattern) for pattern in self._allow):
            raise PermanentError(f"http.request: host {url.host!r} is not on supermq.http_allowlist")
        return url

    async def run(self, params: HttpParams, ctx: ActionContext) -> dict[str, Any]:
        url = self._check(params.url)  # the URL checked is the URL sent
        problem = header_problem(params.headers)
        if problem is not None:  # validated with the parameters; checked again where it is sent
            raise PermanentError(f"http.request: {problem}")
        content = params.body.encode() if params.body is not None else None
        what = f"http.request {params.method} {shown(params.url)}"
        if self._http is None:
            assert self._get_http is not None
            self._http = self._get_http()
        response = await send(
            self._http,
            params.method,
            url,
            what,
            headers=params.headers,
            json=params.json_body,
            content=content,
        )
        raise_for(response, what)
        try:
            data: Any = response.json()
        except ValueError:
            data = response.text
        return {"status": response.status_code, "body": data}
