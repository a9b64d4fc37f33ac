"""``http.request``: a generic HTTP call, only to hosts on ``supermq.http_allowlist``."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Literal
from urllib.parse import urlsplit

from reactor.actions.base import Action, ActionContext, Params
from reactor.errors import PermanentError
from reactor.supermq.http import Http, raise_for, send

_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})


class HttpParams(Params):
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = {}
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

    def __init__(self, http: Http, allowlist: list[str]) -> None:
        self._http = http
        self._allow = [a.lower() for a in allowlist]

    def _check(self, url: str) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise PermanentError(f"http.request: not an http(s) URL: {url!r}")
        if not any(fnmatchcase(host, pattern) for pattern in self._allow):
            raise PermanentError(f"http.request: host {host!r} is not on supermq.http_allowlist")

    async def run(self, params: HttpParams, ctx: ActionContext) -> dict[str, Any]:
        self._check(params.url)
        content = params.body.encode() if params.body is not None else None
        what = f"http.request {params.method} {params.url}"
        response = await send(
            self._http,
            params.method,
            params.url,
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
