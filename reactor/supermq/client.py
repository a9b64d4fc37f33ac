"""An async client for SuperMQ's HTTP APIs: httpx requests and responses on our HTTP/1.1 transport.

Errors are translated here, at the boundary: a transport error or timeout, HTTP 429 (with its
Retry-After) and 5xx become ``RetryableError``; any other 4xx becomes ``PermanentError``; both
carry the status and SuperMQ's ``{"error","message"}`` text. A 401 on a user call refreshes the
token once and repeats the call once.

Requests go straight to an httpx transport (``Http``), not through ``httpx.AsyncClient``: the
client's cookie jar, auth and redirect machinery cost about 100 µs a request here and the reactor
needs none of them (it sends its own ``Authorization``, SuperMQ does not redirect). The transport is
``Http1Transport`` (see transport.py for why and the figures) or, with ``supermq.transport =
"httpx"`` or a ``supermq.proxy``, httpx's own.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from reactor.errors import ActionError, PermanentError, RetryableError
from reactor.events.echoes import Echoes
from reactor.settings import SuperMQSettings
from reactor.supermq import models
from reactor.supermq.profile import PROFILES, Endpoint, ThingsProfile, profile_for
from reactor.supermq.transport import Http1Transport

_JSON = {"Content-Type": "application/json"}
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
    """httpx requests sent straight to an httpx transport, each read whole and closed."""

    def __init__(self, transport: httpx.AsyncBaseTransport, timeout_s: float) -> None:
        self.transport = transport
        self._timeout = httpx.Timeout(timeout_s).as_dict()

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
        response = await self.transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

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


def build_http(settings: SuperMQSettings) -> Http:
    """The shared HTTP client: pooled, TLS verified unless switched off, bounded by a timeout."""
    verify: ssl.SSLContext | bool = settings.verify_tls
    if settings.verify_tls and settings.ca_bundle:
        verify = ssl.create_default_context(cafile=settings.ca_bundle)
    transport: httpx.AsyncBaseTransport
    if settings.transport == "httpx" or settings.proxy:
        limits = httpx.Limits(
            max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections
        )
        transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits, proxy=settings.proxy or None)
    else:
        transport = Http1Transport(
            verify=verify, max_connections=settings.max_connections, keepalive_s=settings.keepalive_s
        )
    return Http(transport, settings.timeout_s)


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


def token_refused(response: httpx.Response) -> bool:
    """The user token was refused: 401, or Mainflux's 500 for an expired token (its services ask
    users over gRPC and pass on ``rpc error: code = Unauthenticated ... "exp" not satisfied`` as
    an internal error: internal/api/common.go EncodeError has no case for it; seen on the real
    deployment of 59bcb72f52c0)."""
    status = response.status_code
    return status == 401 or (status == 500 and b"code = Unauthenticated" in response.content)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


async def send(http: Http, method: str, url: str | httpx.URL, what: str, **kwargs: Any) -> httpx.Response:
    """One HTTP call; a transport error or timeout becomes ``RetryableError`` (the status is checked by
    ``raise_for``). Every HTTP call of the reactor goes through here."""
    try:
        return await http.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{what}: timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise RetryableError(f"{what}: {type(exc).__name__}: {exc}") from exc


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


class TokenProvider:
    """A user token: static, or issued by logging in and refreshed on 401."""

    def __init__(self, settings: SuperMQSettings, http: Http, profile: ThingsProfile) -> None:
        self._s = settings
        self._http = http
        self._profile = profile
        self._users = httpx.URL(settings.users_url)
        self._access = settings.token.get_secret_value()
        self._refresh = ""
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if not self._access:
            async with self._lock:
                if not self._access:
                    await self._login()
        return self._access

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
        tokens = await self._post_tokens(self._profile.token_issue(), body, {})
        self._access, self._refresh = tokens.access_token, tokens.refresh_token

    async def _refresh_once(self) -> bool:
        headers = {"Authorization": f"Bearer {self._refresh}"}
        body = {"domain_id": self._s.domain_id} if self._s.domain_id else {}
        try:
            tokens = await self._post_tokens(self._profile.token_refresh(), body, headers)
        except PermanentError:
            return False
        self._access, self._refresh = tokens.access_token, tokens.refresh_token or self._refresh
        return True

    async def _post_tokens(
        self, ep: Endpoint, body: dict[str, str], headers: dict[str, str]
    ) -> models.Tokens:
        url = join(self._users, ep.path, None)
        response = await send(self._http, ep.method, url, "users token", json=body, headers=headers)
        raise_for(response, "users token")
        return parse(models.Tokens, response, "users token")


class SuperMQClient:
    """One method per SuperMQ operation the actions need; answers parsed into typed models.

    With ``supermq.profile = "auto"`` the profile is chosen on first use (or by
    ``resolve_profile``) from the bootstrap service's ``/health``. ``echoes``, when given, is
    told before each call which event the call will make the platform publish (the loop guard).
    """

    def __init__(
        self, settings: SuperMQSettings, http: Http | None = None, echoes: Echoes | None = None
    ) -> None:
        self._s = settings
        self._http = http or build_http(settings)
        self._owns_http = http is None
        self._profile: ThingsProfile | None = (
            None if settings.profile == "auto" else PROFILES[settings.profile]()
        )
        self.profile_reason = "" if self._profile is None else "set by supermq.profile"
        self._profile_lock = asyncio.Lock()
        self.echoes = echoes
        # Token endpoints are the same in every era the reactor speaks.
        self._tokens = TokenProvider(settings, self._http, ThingsProfile())
        self._bases = {
            "users": httpx.URL(settings.users_url),
            "things": httpx.URL(settings.things_url),
            "bootstrap": httpx.URL(settings.bootstrap_url),
            "certs": httpx.URL(settings.certs_url),
            "http": httpx.URL(settings.http_url),
        }

    @property
    def profile(self) -> ThingsProfile:
        """The profile in use (``resolve_profile`` first when ``supermq.profile = "auto"``)."""
        if self._profile is None:
            raise RuntimeError("the SuperMQ profile is not resolved yet (await resolve_profile())")
        return self._profile

    async def resolve_profile(self) -> ThingsProfile:
        """The profile: the configured one, or the one the bootstrap service's ``/health`` names.
        An unreachable service is a ``RetryableError`` (asked again on the next call)."""
        if self._profile is not None:
            return self._profile
        async with self._profile_lock:
            if self._profile is None:
                url = join(self._bases["bootstrap"], "/health", None)
                response = await send(self._http, "GET", url, "read bootstrap /health")
                raise_for(response, "read bootstrap /health")
                try:
                    health = json.loads(response.content)
                except ValueError:
                    health = {}
                name, why = profile_for(health if isinstance(health, dict) else {})
                self._profile, self.profile_reason = PROFILES[name](), why
        return self._profile

    @property
    def http(self) -> Http:
        """The pooled HTTP client (shared with the generic ``http.request`` action)."""
        return self._http

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # ---- plumbing -----------------------------------------------------------------------------

    async def _send(
        self,
        ep: Endpoint,
        what: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        device: str = "",
        echoes: int = 1,
    ) -> httpx.Response:
        """One call with the user token (renewed once on 401), its echo expected first."""
        query = str(httpx.QueryParams(params)) if params else None
        url = join(self._bases[ep.service], ep.path, query)
        content = None if body is None else json.dumps(body).encode()
        headers = dict(_JSON) if content is not None else {}
        expect = ep.echo and self.echoes is not None
        if expect:
            self.echoes.expect(ep.echo, device, echoes)  # type: ignore[union-attr]
        try:
            token = await self._tokens.token()
            headers["Authorization"] = f"Bearer {token}"
            response = await send(self._http, ep.method, url, what, content=content, headers=headers)
            if token_refused(response):
                headers["Authorization"] = f"Bearer {await self._tokens.renew(token)}"
                response = await send(self._http, ep.method, url, what, content=content, headers=headers)
            raise_for(response, what)
        except ActionError as exc:
            if expect and exc.status is not None:  # answered with an error: nothing was published
                self.echoes.withdraw(ep.echo, device, echoes)  # type: ignore[union-attr]
            raise
        return response

    # ---- bootstrap ----------------------------------------------------------------------------

    async def _p(self) -> ThingsProfile:
        return self._profile or await self.resolve_profile()

    async def view_config(self, config_id: str) -> models.Config:
        what = f"view config {config_id}"
        ep = (await self._p()).config("GET", config_id)
        return parse(models.Config, await self._send(ep, what, device=config_id), what)

    async def list_configs(
        self, *, offset: int = 0, limit: int = 100, state: int | None = None, name: str = ""
    ) -> models.ConfigsPage:
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if state is not None:
            params["state"] = state
        if name:
            params["name"] = name
        response = await self._send((await self._p()).configs(), "list configs", params=params)
        return parse(models.ConfigsPage, response, "list configs")

    async def device_config(
        self, external_id: str, external_key: str, *, thing_id: str = ""
    ) -> models.DeviceConfig:
        """The config as the device fetches it (with its certificate and key): the one place the
        platform serves the certificates (``Authorization: Thing <external key>``)."""
        ep = (await self._p()).device_config(external_id)
        url = join(self._bases[ep.service], ep.path, None)
        what = f"fetch the device config of external id {external_id}"
        if self.echoes is not None:
            self.echoes.expect(ep.echo, thing_id or external_id)
        response = await send(
            self._http, ep.method, url, what, headers={"Authorization": f"Thing {external_key}"}
        )
        raise_for(response, what)
        return parse(models.DeviceConfig, response, what)

    async def served_config(self, config_id: str) -> models.Config:
        """A config with the certificates it really serves: the view leaves ``client_cert`` and
        ``ca_cert`` out (Mainflux and Magistrala v0.14 alike), so they are read the device's way."""
        return await self.with_served_certs(await self.view_config(config_id))

    async def with_served_certs(self, config: models.Config) -> models.Config:
        """``config`` (from a view or a listing) with the certificates its device is served."""
        if config.client_cert or not config.external_key:
            return config
        served = await self.device_config(config.external_id, config.external_key, thing_id=config.thing_id)
        return config.model_copy(update={"client_cert": served.client_cert, "ca_cert": served.ca_cert})

    async def update_config(self, config_id: str, *, name: str, content: str) -> None:
        await self._send(
            (await self._p()).config("PUT", config_id),
            f"update config {config_id}",
            body={"name": name, "content": content},
            device=config_id,
        )

    async def update_certs(
        self, config_id: str, *, client_cert: str, client_key: str, ca_cert: str
    ) -> models.ConfigCerts:
        what = f"update certs of config {config_id}"
        body = {"client_cert": client_cert, "client_key": client_key, "ca_cert": ca_cert}
        ep = (await self._p()).config_certs(config_id)
        response = await self._send(ep, what, body=body, device=config_id)
        return parse(models.ConfigCerts, response, what)

    async def update_connections(self, config_id: str, channels: list[str]) -> None:
        await self._send(
            (await self._p()).config_connections(config_id),
            f"update connections of config {config_id}",
            body={"channels": channels},
            device=config_id,
        )

    async def change_state(self, config_id: str, state: int) -> None:
        await self._send(
            (await self._p()).config_state(config_id),
            f"change state of config {config_id}",
            body={"state": state},
            device=config_id,
        )

    async def remove_config(self, config_id: str) -> None:
        ep = (await self._p()).config("DELETE", config_id)
        await self._send(ep, f"remove config {config_id}", device=config_id)

    # ---- things and channels ------------------------------------------------------------------

    async def view_thing(self, thing_id: str) -> models.Thing:
        what = f"view thing {thing_id}"
        ep = (await self._p()).thing(thing_id)
        return parse(models.Thing, await self._send(ep, what, device=thing_id), what)

    async def set_thing_enabled(self, thing_id: str, enabled: bool) -> models.Thing:
        what = f"{'enable' if enabled else 'disable'} thing {thing_id}"
        ep = (await self._p()).thing_status(thing_id, enabled)
        return parse(models.Thing, await self._send(ep, what, device=thing_id), what)

    async def connect(self, thing_id: str, channel_ids: list[str], *, connect: bool = True) -> list[str]:
        """Connect (or disconnect) a thing and channels, in as many calls as the era needs; returns
        the channels it changed (a connection that existed already is not an error)."""
        verb = "connect" if connect else "disconnect"
        profile = await self._p()
        changed: list[str] = []
        for call in profile.connections(thing_id, channel_ids, connect):
            pairs = call.body.get("objects") or [call.body.get("channel_id")]
            what = f"{verb} thing {thing_id} / channel {', '.join(map(str, pairs))}"
            try:
                await self._send(call.endpoint, what, body=call.body, device=thing_id, echoes=call.echoes)
            except PermanentError as exc:
                if connect and exc.status is not None and profile.already_connected(exc.status):
                    continue
                raise
            changed += [str(p) for p in pairs]
        return changed

    async def view_channel(self, channel_id: str) -> models.Channel:
        what = f"view channel {channel_id}"
        ep = (await self._p()).channel(channel_id)
        return parse(models.Channel, await self._send(ep, what, device=channel_id), what)

    # ---- certs --------------------------------------------------------------------------------

    async def issue_cert(self, thing_id: str, ttl: str) -> models.Cert:
        what = f"issue cert for thing {thing_id}"
        body = {"thing_id": thing_id, "ttl": ttl}
        return parse(models.Cert, await self._send((await self._p()).cert_issue(), what, body=body), what)

    async def view_cert(self, serial: str) -> models.Cert:
        what = f"view cert {serial}"
        return parse(models.Cert, await self._send((await self._p()).cert("GET", serial), what), what)

    async def revoke_certs(self, thing_id: str) -> models.Revocation:
        """Revoke the certificates of a thing (the certs service revokes every cert of the thing id)."""
        what = f"revoke certs of thing {thing_id}"
        response = await self._send((await self._p()).cert("DELETE", thing_id), what)
        return parse(models.Revocation, response, what)

    async def list_serials(self, thing_id: str, *, offset: int = 0, limit: int = 100) -> models.SerialsPage:
        what = f"list cert serials of thing {thing_id}"
        response = await self._send(
            (await self._p()).serials(thing_id), what, params={"offset": offset, "limit": limit}
        )
        return parse(models.SerialsPage, response, what)

    # ---- http adapter -------------------------------------------------------------------------

    async def publish(
        self,
        channel_id: str,
        thing_key: str,
        payload: Any,
        *,
        subtopic: str = "",
        content_type: str = "application/senml+json",
    ) -> None:
        """Publish a message to a channel as the thing (``Authorization: Thing <key>``)."""
        ep = (await self._p()).publish(channel_id, subtopic)
        url = join(self._bases[ep.service], ep.path, None)
        body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        headers = {"Content-Type": content_type, "Authorization": f"Thing {thing_key}"}
        what = f"publish to channel {channel_id}"
        response = await send(self._http, ep.method, url, what, content=body, headers=headers)
        raise_for(response, what)
