"""The user token: static, or issued by logging in, refreshed before it expires and on refusal.

Mainflux (59bcb72f52c0, seen on the real deployment) does not answer an expired token with 401
everywhere: things answers ``POST /things`` with an empty 500 and ``POST /channels`` with 403
(``rpc error: code = Unauthenticated ... "exp" not satisfied``). So the provider reads the JWT's
``exp`` and ``iat`` (no verification: only to know when to renew, measured against the issuer's
own clock through ``iat``) and renews ahead of expiry; a refusal (``token_refused``) renews too.

One login at a time, bounded: a renewal (refresh, else log in) has ``timeout_s`` in all, a call
waits for another call's renewal no longer than that (and a half), and the calls that waited for
a renewal that failed share its failure instead of each trying again in turn (a hung users
service held every action on the lock, one timeout after another). When the daemon arms the
``AuthBreaker``, a failed login opens it: SuperMQ refuses the credentials or does not answer, so
no event can be acted on. Calls then fail at once with ``SuspendedError``, the worker pauses
consuming (the events in hand stay pending, not dead-lettered), and a probe login on a backoff
closes the breaker when it succeeds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx

from reactor.backoff import StoppedError, until_stopped
from reactor.errors import ActionError, AmbiguousError, PermanentError, RetryableError, SuspendedError
from reactor.settings import SuperMQSettings
from reactor.supermq import models
from reactor.supermq.http import Http, join, parse, raise_for, send
from reactor.supermq.profile import Endpoint, ThingsProfile

#: Renew this share of a token's lifetime before it ends (at most ``_MARGIN_MAX_S``).
_MARGIN_SHARE = 0.1
_MARGIN_MAX_S = 30.0
#: Probe logins while the breaker is open: after this long, doubling up to the cap.
_PROBE_INITIAL_S = 0.2
_PROBE_MAX_S = 30.0


def token_refused(response: httpx.Response) -> bool:
    """The user token was refused: 401, or Mainflux's 403/500 carrying its gRPC
    ``code = Unauthenticated`` (internal/api/common.go EncodeError has no case for it)."""
    status = response.status_code
    return status == 401 or (status in (403, 500) and b"code = Unauthenticated" in response.content)


def token_times(token: str, now: float, *, wall: float | None = None) -> tuple[float, float] | None:
    """When to renew a JWT and when it expires, on this machine's monotonic clock (``now``); None
    if it is not one or carries no ``exp``. A token just issued is measured on its issuer's clock
    (``exp - iat`` from now); one given in the settings (``wall``: this machine's time now) by
    what is left of it."""
    try:
        payload = token.split(".")[1]
        claims: Any = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = float(claims["exp"])
        iat = float(claims.get("iat", exp))
    except (IndexError, KeyError, TypeError, ValueError):
        return None
    lifetime = max(exp - iat, 0.0)
    left = lifetime if wall is None else exp - wall
    expires = now + left
    return expires - min(lifetime * _MARGIN_SHARE, _MARGIN_MAX_S), expires


def _shared(failure: ActionError) -> ActionError:
    """The failure of the renewal a call waited for, as its own (of the same kind)."""
    kind = PermanentError if isinstance(failure, PermanentError) else RetryableError
    return kind(
        f"{failure} (a login moments ago)", status=failure.status, retry_after_s=failure.retry_after_s
    )


class AuthBreaker:
    """Open while SuperMQ does not take the reactor's login (refused, or not answered).

    Only an ``armed`` breaker opens (the daemon arms it; one-shot commands fail as before). While
    open, calls fail at once with ``SuspendedError``; ``resume`` returns once a probe login
    succeeded, one probe at a time on a doubling delay."""

    def __init__(self, probe: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.armed = False
        self.reason = ""
        self._probe = probe
        self._closed = asyncio.Event()
        self._closed.set()
        self._delay_s = _PROBE_INITIAL_S
        self._probe_at = 0.0

    @property
    def open(self) -> bool:
        return not self._closed.is_set()

    def error(self) -> SuspendedError:
        return SuspendedError(f"SuperMQ login paused: {self.reason}")

    def trip(self, reason: str) -> SuspendedError:
        """Open (or stay open after a failed probe); the next probe is due after the delay."""
        self.reason = reason
        self._closed.clear()
        self._probe_at = time.monotonic() + self._delay_s
        self._delay_s = min(self._delay_s * 2, _PROBE_MAX_S)
        return self.error()

    def close(self) -> None:
        self.reason = ""
        self._delay_s = _PROBE_INITIAL_S
        self._closed.set()

    @property
    def probe_due(self) -> bool:
        return self.open and time.monotonic() >= self._probe_at

    async def resume(self, stop: asyncio.Event) -> None:
        """Return once the breaker is closed, probing when a probe is due; ``StoppedError`` on stop."""
        while self.open:
            if stop.is_set():
                raise StoppedError
            wait_s = self._probe_at - time.monotonic()
            if wait_s > 0:
                await self._closed_or_stop(stop, wait_s)
            else:
                await until_stopped(self._probe(), stop)

    async def _closed_or_stop(self, stop: asyncio.Event, timeout_s: float) -> None:
        waits = {asyncio.ensure_future(self._closed.wait()), asyncio.ensure_future(stop.wait())}
        _, pending = await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()


class TokenProvider:
    """A user token: static, or issued by logging in; renewed ahead of its expiry and on refusal."""

    def __init__(self, settings: SuperMQSettings, http: Http, profile: ThingsProfile) -> None:
        self._s = settings
        self._http = http
        #: The era's token endpoints and login body (the client sets it once ``auto`` resolves).
        self.profile = profile
        self._users = httpx.URL(settings.users_url)
        self._access = settings.token.get_secret_value()
        self._refresh = ""
        times = token_times(self._access, time.monotonic(), wall=time.time()) if self._access else None
        self._renew_at: float | None
        self._expires_at: float | None
        self._renew_at, self._expires_at = times or (None, None)
        self._lock = asyncio.Lock()
        self._login_s = settings.timeout_s  # a whole renewal: refresh, else log in
        self._wait_s = settings.timeout_s * 1.5  # for another call's renewal
        self._renewals = 0  # renewals ended, and how the last one failed (shared with its waiters)
        self._failure: ActionError | None = None
        self.breaker = AuthBreaker(self._probe)

    async def token(self) -> str:
        if self.breaker.open:
            raise self.breaker.error()
        if not self._access:
            return await self.renew("")
        now = time.monotonic()
        if self._renew_at is not None and now >= self._renew_at and self._can_renew():
            try:
                return await self.renew(self._access)
            except ActionError:
                if self._expires_at is not None and now < self._expires_at:
                    return self._access  # renewing ahead failed: the token still serves until it ends
                raise
        return self._access

    def _can_renew(self) -> bool:
        return bool(self._refresh or self._s.identity)

    def _keep(self, tokens: models.Tokens) -> None:
        self._access, self._refresh = tokens.access_token, tokens.refresh_token or self._refresh
        self._renew_at, self._expires_at = token_times(self._access, time.monotonic()) or (None, None)

    async def renew(self, stale: str) -> str:
        """A new token after ``stale`` was refused (or ran out): refresh if possible, else log in
        again. A call that waited for another call's renewal takes its outcome, failure included."""
        renewals = self._renewals
        async with self._locked():
            if self._access and self._access != stale:
                return self._access  # another call renewed it already
            if self.breaker.open:
                raise self.breaker.error()
            if self._renewals != renewals and self._failure is not None:
                raise _shared(self._failure)
            await self._renewed()
            return self._access

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """The token lock, waited for no longer than ``_wait_s``."""
        try:
            async with asyncio.timeout(self._wait_s):
                await self._lock.acquire()
        except TimeoutError:
            raise RetryableError(f"users token: waited {self._wait_s:g}s for another call's login") from None
        try:
            yield
        finally:
            self._lock.release()

    async def _renewed(self) -> None:
        """Refresh, else log in, within ``_login_s``; a failure opens the breaker when it is armed."""
        try:
            async with asyncio.timeout(self._login_s):
                if not (self._refresh and await self._refresh_once()):
                    await self._login()
        except TimeoutError:
            failure: ActionError = RetryableError(f"users token: no answer within {self._login_s:g}s")
        except ActionError as exc:
            failure = exc
        else:
            self._renewals, self._failure = self._renewals + 1, None
            return
        self._renewals, self._failure = self._renewals + 1, failure
        if self.breaker.armed:
            raise self.breaker.trip(str(failure)) from failure
        raise failure

    async def _probe(self) -> None:
        """One login while the breaker is open: it closes on success, else stays open for longer."""
        async with self._lock:
            if not self.breaker.probe_due:
                return
            try:
                async with asyncio.timeout(self._login_s):
                    await self._login()
            except TimeoutError:
                self.breaker.trip(f"users token: no answer within {self._login_s:g}s")
            except ActionError as exc:
                self.breaker.trip(str(exc))
            else:
                self._failure = None
                self.breaker.close()

    async def _login(self) -> None:
        if not self._s.identity:
            raise PermanentError(
                "SuperMQ refused the token and no identity/secret is configured to log in", status=401
            )
        body = self.profile.login_body(self._s.identity, self._s.secret.get_secret_value(), self._s.domain_id)
        self._keep(await self._post_tokens(self.profile.token_issue(), body, {}))

    async def _refresh_once(self) -> bool:
        headers = {"Authorization": f"Bearer {self._refresh}"}
        body = self.profile.refresh_body(self._s.domain_id)
        try:
            tokens = await self._post_tokens(self.profile.token_refresh(), body, headers)
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
        try:
            response = await send(self._http, ep.method, url, "users token", json=body, headers=headers)
        except AmbiguousError as exc:  # a login or refresh sent twice does no harm
            raise RetryableError(str(exc)) from exc
        raise_for(response, "users token")
        return parse(models.Tokens, response, "users token")
