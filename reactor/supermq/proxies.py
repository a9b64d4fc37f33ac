"""Proxies from the environment: ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``
(upper or lower case, as curl and httpx read them), honoured for every call the reactor makes.

A request whose URL the environment proxies goes through a transport of the same kind with that
proxy (the reactor's own for the SuperMQ services, tunnel.py; httpx's for ``http.request`` or
``supermq.transport = "httpx"``); the others go direct. A SOCKS proxy, or one that is not a URL,
is refused with one line naming the variable: never ignored. ``supermq.proxy`` takes precedence
over the environment (every call through it).
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from reactor.errors import ConfigError
from reactor.redact import shown_url

_VARIABLES = {"http": "HTTP_PROXY", "https": "HTTPS_PROXY", "all": "ALL_PROXY"}
_CACHE_LIMIT = 1024  # hosts remembered per transport (the http.request hosts come from events)


def environment_proxies() -> dict[str, str]:
    """The proxy for each of http and https that the environment names (``ALL_PROXY`` for a
    scheme without its own), or ``ConfigError`` for one the reactor cannot use."""
    found = urllib.request.getproxies_environment()
    proxies: dict[str, str] = {}
    for scheme in ("http", "https"):
        key = scheme if found.get(scheme) else "all"
        value = found.get(key, "").strip()
        if not value:
            continue
        if "://" not in value:
            value = "http://" + value  # as curl and httpx read a proxy without a scheme
        variable = next((v for v in (_VARIABLES[key], _VARIABLES[key].lower()) if os.environ.get(v)), key)
        problem = _unusable(value)
        if problem:
            raise ConfigError(
                f"{variable}={shown_url(value)!r}: {problem}; "
                "unset it, list the SuperMQ hosts in NO_PROXY, or set supermq.proxy"
            )
        proxies[scheme] = value
    return proxies


def _unusable(url: str) -> str | None:
    """Why the reactor cannot use the proxy ``url``, or None."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port over 65535 would end in an OverflowError from connect
    except ValueError as exc:  # its text names only the port or the brackets, never the userinfo
        return f"not a usable URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "only http:// or https:// proxies are supported (not SOCKS)"
    return None


def _no_proxy() -> list[str]:
    """``NO_PROXY``'s entries as hosts or domains: ports and brackets dropped, ``*.``/``.`` too."""
    entries = []
    for raw in urllib.request.getproxies_environment().get("no", "").split(","):
        entry = raw.strip().lower()
        if entry.startswith("[") and "]" in entry:  # [::1]:8080
            entry = entry[1 : entry.index("]")]
        elif entry.count(":") == 1:  # host:port (an IPv6 address has more colons)
            entry = entry.split(":", 1)[0]
        if entry != "*":
            entry = entry.lstrip("*.")
        if entry:
            entries.append(entry)
    return entries


def bypassed(host: str) -> bool:
    """Whether ``NO_PROXY`` exempts ``host``: ``*``, the host itself, or a domain it is in
    (``example.com`` and ``.example.com`` both cover ``api.example.com``); a ``:port`` on an
    entry is ignored, as urllib does."""
    host = host.lower().strip("[]")
    return any(e in ("*", host) or host.endswith("." + e) for e in _no_proxy())


class ProxyRoutes(httpx.AsyncBaseTransport):
    """Each request to the transport its URL's proxy calls for: ``proxied(proxy_url)`` for one
    the environment proxies (one transport per proxy), ``direct`` for the rest. ``proxied`` makes
    transports of ``direct``'s kind: whether they bound the whole exchange themselves
    (``checks_deadline``) is ``direct``'s answer."""

    def __init__(
        self,
        direct: httpx.AsyncBaseTransport,
        proxies: dict[str, str],
        proxied: Callable[[str], httpx.AsyncBaseTransport],
    ) -> None:
        self.direct = direct
        self.checks_deadline: bool = getattr(direct, "checks_deadline", False)
        self._proxies = proxies
        self._make = proxied
        self._via: dict[str, httpx.AsyncBaseTransport] = {}
        self._routes: dict[tuple[str, str], httpx.AsyncBaseTransport] = {}

    def route(self, url: httpx.URL) -> httpx.AsyncBaseTransport:
        key = (url.scheme, url.host)
        transport = self._routes.get(key)
        if transport is None:
            proxy = self._proxies.get(url.scheme)
            if proxy is None or bypassed(url.host):
                transport = self.direct
            else:
                transport = self._via.get(proxy) or self._via.setdefault(proxy, self._make(proxy))
            if len(self._routes) >= _CACHE_LIMIT:
                self._routes.clear()
            self._routes[key] = transport
        return transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.route(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        await self.direct.aclose()
        for transport in self._via.values():
            await transport.aclose()
