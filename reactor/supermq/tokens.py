"""The user token: static, or issued by logging in, refreshed before it expires and on refusal.

Mainflux (59bcb72f52c0, seen on the real deployment) does not answer an expired token with 401
everywhere: things answers ``POST /things`` with an empty 500 and ``POST /channels`` with 403
(``rpc error: code = Unauthenticated ... "exp" not satisfied``). So the provider reads the JWT's
``exp`` and ``iat`` (no verification: only to know when to renew, measured against the issuer's
own clock through ``iat``) and renews ahead of expiry; a refusal (``token_refused``) renews too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx

from reactor.errors import ActionError, PermanentError
from reactor.settings import SuperMQSettings
from reactor.supermq import models
from reactor.supermq.http import Http, join, parse, raise_for, send
from reactor.supermq.profile import Endpoint, ThingsProfile

#: Renew this share of a token's lifetime before it ends (at most ``_MARGIN_MAX_S``).
_MARGIN_SHARE = 0.1
_MARGIN_MAX_S = 30.0


def token_refused(response: httpx.Response) -> bool:
    """The user token was refused: 401, or Mainflux's 403/500 carrying its gRPC
    ``code = Unauthenticated`` (internal/api/common.go EncodeError has no case for it)."""
    status = response.status_code
    return status == 401 or (status in (403, 500) and b"code = Unauthenticated" in response.content)


def renew_at(token: str, now: float) -> float | None:
    """When (on this machine's monotonic clock, given ``now``) to renew a JWT; None if it is not
    one or carries no ``exp``."""
    try:
        payload = token.split(".")[1]
        claims: Any = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = float(claims["exp"])
        iat = float(claims.get("iat", time.time()))
    except (IndexError, KeyError, TypeError, ValueError):
        return None
    lifetime = max(exp - iat, 0.0)
    return now + lifetime - min(lifetime * _MARGIN_SHARE, _MARGIN_MAX_S)


class TokenProvider:
    """A user token: static, or issued by logging in; renewed ahead of its expiry and on refusal."""

    def __init__(self, settings: SuperMQSettings, http: Http, profile: ThingsProfile) -> None:
        self._s = settings
        self._http = http
        self._profile = profile
        self._users = httpx.URL(settings.users_url)
        self._access = settings.token.get_secret_value()
        self._refresh = ""
        self._renew_at = renew_at(self._access, time.monotonic()) if self._access else None
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if not self._access:
            async with self._lock:
                if not self._access:
                    await self._login()
        elif self._renew_at is not None and time.monotonic() >= self._renew_at and self._can_renew():
            return await self.renew(self._access)
        return self._access

    def _can_renew(self) -> bool:
        return bool(self._refresh or self._s.identity)

    def _keep(self, tokens: models.Tokens) -> None:
        self._access, self._refresh = tokens.access_token, tokens.refresh_token or self._refresh
        self._renew_at = renew_at(self._access, time.monotonic())

    async def renew(self, stale: str) -> str:
        """A new token after ``stale`` was refused: refresh if possible, else log in again."""
        async with self._lock:
            if self._access and self._access != stale:
                return self._access  # another call renewed it already
            if self._refresh and await self._refresh_once():
                return self._access
            await self._login()
            return self._access

    async def _login(self) -> None:
        if not self._s.identity:
            raise PermanentError(
                "SuperMQ refused the token and no identity/secret is configured to log in", status=401
            )
        body: dict[str, str] = {"identity": self._s.identity, "secret": self._s.secret.get_secret_value()}
        if self._s.domain_id:
            body["domain_id"] = self._s.domain_id
        self._keep(await self._post_tokens(self._profile.token_issue(), body, {}))

    async def _refresh_once(self) -> bool:
        headers = {"Authorization": f"Bearer {self._refresh}"}
        body = {"domain_id": self._s.domain_id} if self._s.domain_id else {}
        try:
            tokens = await self._post_tokens(self._profile.token_refresh(), body, headers)
        except ActionError as exc:
            if exc.status is None:
                raise  # the users service did not answer: try again later, not a new login
            # Refused, in whatever words: Magistrala v0.14.0 answers an expired refresh token with
            # 500 (auth/api/grpc/server.go encodeError has no case for it), Mainflux with 401.
            return False
        self._keep(tokens)
        return True

    async def _post_tokens(
        self, ep: Endpoint, body: dict[str, str], headers: dict[str, str]
    ) -> models.Tokens:
        url = join(self._users, ep.path, None)
        response = await send(self._http, ep.method, url, "users token", json=body, headers=headers)
        raise_for(response, "users token")
        return parse(models.Tokens, response, "users token")
