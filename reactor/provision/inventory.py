"""An optional inventory lookup: for deployments that keep their devices elsewhere, a device not
in the enrollment files is asked of an HTTP service (``provision.inventory_url``, on a host of
``supermq.http_allowlist`` only; TLS verified as every call of the reactor).

``GET <inventory_url with {external_id}>`` answers 200 with
``{"external_key": "...", "template": "...", "fields": {...}}`` for an enrolled device, 404 for
one it does not know; anything else is an error (5xx and timeouts retried, like any action).
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import SecretStr

from reactor.errors import ConfigError, PermanentError
from reactor.provision.enrollments import Enrollment
from reactor.supermq.http import Http, raise_for, send


def check_inventory_url(url: str, allowlist: list[str]) -> None:
    """``ConfigError`` unless ``url`` is http(s), has ``{external_id}`` and an allowed host."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"provision.inventory_url: not an http(s) URL: {url!r}")
    if "{external_id}" not in url:
        raise ConfigError("provision.inventory_url: must contain {external_id}")
    if not any(fnmatchcase(host, a.lower()) for a in allowlist):
        raise ConfigError(f"provision.inventory_url: host {host!r} is not on supermq.http_allowlist")


class Inventory:
    def __init__(self, http: Http, url: str, token: SecretStr | None = None) -> None:
        self._http = http
        self._url = url
        self._token = token

    async def lookup(self, external_id: str) -> Enrollment | None:
        """The device's enrollment from the inventory, or None when it answers 404."""
        url = self._url.replace("{external_id}", quote(external_id, safe=""))
        what = f"inventory lookup of external id {external_id!r}"
        headers = {"Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        response = await send(self._http, "GET", url, what, headers=headers)
        if response.status_code == 404:
            return None
        raise_for(response, what)
        try:
            body: Any = json.loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PermanentError(f"{what}: the inventory did not answer a JSON object")
        key, template, fields = body.get("external_key"), body.get("template"), body.get("fields", {})
        if not isinstance(key, str) or not key or not isinstance(template, str) or not template:
            raise PermanentError(f"{what}: the answer needs external_key and template (non-empty strings)")
        if not isinstance(fields, dict):
            raise PermanentError(f"{what}: fields must be an object")
        return Enrollment(
            external_id, SecretStr(key), template, fields, f"inventory {urlsplit(url).hostname}"
        )
