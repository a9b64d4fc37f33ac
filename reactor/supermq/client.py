"""An async client for SuperMQ's HTTP APIs: one method per operation the actions need.

The HTTP plumbing and error translation are in ``http.py``, the user token in ``tokens.py``, the
era's paths and bodies in ``profile.py``. A refused token is renewed once and the call repeated.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import httpx

from reactor.errors import ActionError, PermanentError, RetryableError
from reactor.events.echoes import Echoes
from reactor.settings import SuperMQSettings
from reactor.supermq import models
from reactor.supermq.http import (
    JSON_HEADERS,
    Http,
    build_external_http,
    build_http,
    join,
    parse,
    raise_for,
    send,
)
from reactor.supermq.profile import Endpoint, ThingsProfile, profile_for
from reactor.supermq.profile_clients import build_profile
from reactor.supermq.tokens import AuthBreaker, TokenProvider, token_refused


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
        services = (
            settings.users_url,
            settings.things_url,
            settings.bootstrap_url,
            settings.certs_url,
            settings.clients_url,
            settings.channels_url,
        )
        self._http = http or build_http(settings, origins=(*services, settings.http_url))
        self._owns_http = http is None
        self._external: Http | None = None if http is None else http
        self._profile: ThingsProfile | None = (
            None if settings.profile == "auto" else build_profile(settings.profile, settings.domain_id)
        )
        self.profile_reason = "" if self._profile is None else "set by supermq.profile"
        self._profile_lock = asyncio.Lock()
        self.echoes = echoes
        # Token endpoints are the same in every era; the login body is the profile's (set on resolve).
        self._tokens = TokenProvider(settings, self._http, self._profile or ThingsProfile())
        self._bases = {
            "users": httpx.URL(settings.users_url),
            "things": httpx.URL(settings.things_url),
            "clients": httpx.URL(settings.clients_url),
            "channels": httpx.URL(settings.channels_url),
            "bootstrap": httpx.URL(settings.bootstrap_url),
            "certs": httpx.URL(settings.certs_url),
            "http": httpx.URL(settings.http_url),
        }

    @property
    def known_profile(self) -> ThingsProfile | None:
        """The profile, if known yet (configured, or ``auto`` resolved)."""
        return self._profile

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
                self._profile, self.profile_reason = build_profile(name, self._s.domain_id), why
                self._tokens.profile = self._profile
        return self._profile

    @property
    def auth(self) -> AuthBreaker:
        """The login breaker (armed by the daemon: it pauses consuming while SuperMQ refuses the login)."""
        return self._tokens.breaker

    @property
    def http(self) -> Http:
        """The pooled HTTP client of the SuperMQ services."""
        return self._http

    @property
    def external_http(self) -> Http:
        """The client of the generic ``http.request`` action: httpx's own transport (built on
        first use), or the one given to this client."""
        if self._external is None:
            self._external = build_external_http(self._s)
        return self._external

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
            if self._external is not None:
                await self._external.aclose()
                self._external = None

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
        echo_fields: Mapping[str, Any] | None = None,
        thing_key: str | None = None,
    ) -> httpx.Response:
        """One call, its echo expected first: with the user token (renewed once when refused),
        or as a device with ``thing_key`` (``Authorization: Thing <key>``, ``Client`` at HEAD)."""
        query = str(httpx.QueryParams(params)) if params else None
        url = join(self._bases[ep.service], ep.path, query)
        content = None if body is None else json.dumps(body).encode()
        headers = dict(JSON_HEADERS) if content is not None else {}
        token = await self._tokens.token() if thing_key is None else None  # no token, no call, no echo
        scheme = (self._profile or ThingsProfile).device_scheme
        headers["Authorization"] = f"{scheme} {thing_key}" if token is None else f"Bearer {token}"
        guard = self.echoes if ep.echo else None
        if guard is not None:
            guard.expect(ep.echo, device, echoes, echo_fields)
            await guard.share(ep.echo, device)
        try:
            response = await send(self._http, ep.method, url, what, content=content, headers=headers)
            if token is not None and token_refused(response):
                headers["Authorization"] = f"Bearer {await self._tokens.renew(token)}"
                response = await send(self._http, ep.method, url, what, content=content, headers=headers)
            raise_for(response, what)
        except ActionError as exc:
            if guard is not None and exc.status is not None:  # answered with an error: no such echo
                guard.withdraw(ep.echo, device, echoes, echo_fields)
                await guard.unshare(ep.echo, device)
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
        platform serves the certificates (``Authorization: Thing <external key>``). Mainflux
        publishes ``thing.bootstrap`` for it, the whole config and the device's key included."""
        ep = (await self._p()).device_config(external_id)
        what = f"fetch the device config of external id {external_id}"
        device, fields = thing_id or external_id, {"success": True}
        response = await self._send(ep, what, device=device, echo_fields=fields, thing_key=external_key)
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
            echo_fields={"content": content},
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
            echo_fields={"channels": channels},
        )

    async def change_state(self, config_id: str, state: int) -> None:
        await self._send(
            (await self._p()).config_state(config_id),
            f"change state of config {config_id}",
            body={"state": state},
            device=config_id,
            echo_fields={"state": state},
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
        try:
            return parse(models.Thing, await self._send(ep, what, device=thing_id), what)
        except RetryableError as exc:
            # Already so: Magistrala v0.14.0 answers 500 "status already assigned"
            # (things/service.go changeClientStatus); that is done, not a fault to retry.
            if exc.status == 500 and "status already assigned" in str(exc):
                return await self.view_thing(thing_id)
            raise
        except PermanentError as exc:  # SuperMQ HEAD: a service error, 422 (api/http/common.go)
            if exc.status == 422 and "status already assigned" in str(exc):
                return await self.view_thing(thing_id)
            raise

    async def connect(self, thing_id: str, channel_ids: list[str], *, connect: bool = True) -> list[str]:
        """Connect (or disconnect) a thing and channels, in as many calls as the era needs; returns
        the channels it changed (a connection that existed already is not an error)."""
        verb = "connect" if connect else "disconnect"
        profile = await self._p()
        changed: list[str] = []
        for call in profile.connections(thing_id, channel_ids, connect):
            pairs = call.body.get("objects") or call.body.get("channel_ids") or [call.body.get("channel_id")]
            what = f"{verb} thing {thing_id} / channel {', '.join(map(str, pairs))}"
            try:
                await self._send(call.endpoint, what, body=call.body, device=thing_id, echoes=call.echoes)
            except PermanentError as exc:
                if connect and exc.status is not None and profile.already_connected(exc.status, str(exc)):
                    continue
                raise
            changed += [str(p) for p in pairs]
        return changed

    async def view_channel(self, channel_id: str) -> models.Channel:
        what = f"view channel {channel_id}"
        ep = (await self._p()).channel(channel_id)
        return parse(models.Channel, await self._send(ep, what, device=channel_id), what)

    # ---- provisioning: create, find by name, remove (reactor.provision) ------------------------

    async def create_thing(self, name: str, metadata: Mapping[str, Any]) -> models.Thing:
        """A new thing; the platform chooses its id and key (both eras answer the thing, key included)."""
        what = f"create thing {name!r}"
        body = {"name": name, "metadata": dict(metadata), "credentials": {}}
        return parse(models.Thing, await self._send((await self._p()).things_create(), what, body=body), what)

    async def find_things(self, name: str) -> list[models.Thing]:
        """The enabled things named exactly ``name`` (the platform's filter matches in part)."""
        what = f"find things named {name!r}"
        ep = (await self._p()).things_list()
        params = {"name": name, "limit": 100, "status": "enabled"}
        page = parse(models.ThingsPage, await self._send(ep, what, params=params), what)
        return [t for t in page.things if t.name == name and t.status in ("", "enabled")]

    async def remove_thing(self, thing_id: str) -> None:
        """Delete a thing (v0.14.0), or disable it (Mainflux has no delete; its bootstrap service
        then removes the thing's config itself)."""
        what = f"remove thing {thing_id}"
        try:
            await self._send((await self._p()).thing_remove(thing_id), what, device=thing_id)
        except RetryableError as exc:
            if exc.status == 500 and "status already assigned" in str(exc):
                return  # disabled already: removed, as far as Mainflux goes
            raise

    async def create_channel(self, name: str, metadata: Mapping[str, Any]) -> models.Channel:
        what = f"create channel {name!r}"
        body = {"name": name, "metadata": dict(metadata)}
        ep = (await self._p()).channels_create()
        return parse(models.Channel, await self._send(ep, what, body=body), what)

    async def find_channels(self, name: str) -> list[models.Channel]:
        """The channels named exactly ``name``, enabled first; disabled ones too where the era
        keeps them (Mainflux: the name stays taken)."""
        what = f"find channels named {name!r}"
        profile = await self._p()
        params = {"name": name, "limit": 100} | profile.channels_query
        response = await self._send(profile.channels_list(), what, params=params)
        named = [c for c in parse(models.ChannelsPage, response, what).channels if c.name == name]
        return sorted(named, key=lambda c: c.status == "disabled")

    async def enable_channel(self, channel_id: str) -> None:
        what = f"enable channel {channel_id}"
        await self._send((await self._p()).channel_enable(channel_id), what, device=channel_id)

    async def remove_channel(self, channel_id: str) -> None:
        what = f"remove channel {channel_id}"
        try:
            await self._send((await self._p()).channel_remove(channel_id), what, device=channel_id)
        except RetryableError as exc:
            if exc.status == 500 and "status already assigned" in str(exc):
                return
            raise

    async def add_config(self, config: Mapping[str, Any]) -> str:
        """Create a bootstrap config for an existing thing (``config["thing_id"]``); returns its id."""
        thing_id = str(config["thing_id"])
        what = f"create the bootstrap config of external id {config.get('external_id')}"
        profile = await self._p()
        await self._send(profile.config_add(), what, body=profile.config_add_body(config), device=thing_id)
        return thing_id

    async def find_config(self, external_id: str) -> models.Config | None:
        """The config of ``external_id``, or None: filtered by the platform where it can (v0.14.0),
        else paged through (Mainflux lists no external id filter)."""
        profile = await self._p()
        offset = 0
        params: dict[str, Any] = {"external_id": external_id} if profile.configs_by_external_id else {}
        while True:
            what = f"find the config of external id {external_id}"
            query = params | {"offset": offset, "limit": 100}
            page = parse(models.ConfigsPage, await self._send(profile.configs(), what, params=query), what)
            found = next((c for c in page.configs if c.external_id == external_id), None)
            if found is not None:
                return await self.view_config(found.thing_id)
            offset += len(page.configs)
            if not page.configs or offset >= page.total:
                return None

    # ---- certs --------------------------------------------------------------------------------

    async def issue_cert(self, thing_id: str, ttl: str, *, common_name: str = "") -> models.Cert:
        """A certificate for the thing. Its CN is the thing's key, as v0.14's certs service sets it;
        HEAD's wants it said (``options.common_name``), so it is read from the client when not given."""
        what = f"issue cert for thing {thing_id}"
        profile = await self._p()
        if profile.revokes_by_serial and not common_name:
            common_name = (await self.view_thing(thing_id)).credentials.secret
        call = profile.issue_call(thing_id, ttl, common_name)
        return parse(models.Cert, await self._send(call.endpoint, what, body=call.body), what)

    async def view_cert(self, serial: str) -> models.Cert:
        what = f"view cert {serial}"
        return parse(models.Cert, await self._send((await self._p()).cert("GET", serial), what), what)

    async def revoke_certs(self, thing_id: str) -> models.Revocation:
        """Revoke the certificates of a thing: v0.14's certs service revokes every cert of the thing
        id in one call; HEAD's revokes by serial, so each certificate of the entity not yet revoked
        is revoked in turn."""
        what = f"revoke certs of thing {thing_id}"
        profile = await self._p()
        if not profile.revokes_by_serial:
            response = await self._send(profile.cert("DELETE", thing_id), what)
            return parse(models.Revocation, response, what)
        offset = 0
        while True:
            page = await self.list_serials(thing_id, offset=offset, limit=100)
            for cert in page.certs:
                if not cert.revoked and cert.cert_serial:
                    await self.revoke_cert(cert.cert_serial)
            offset += len(page.certs)
            if not page.certs or offset >= page.total:
                break
        return models.Revocation(revocation_time=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    async def revoke_cert(self, serial: str) -> None:
        """Revoke exactly one certificate by its serial (HEAD: ``PATCH /{domainID}/certs/{id}/revoke``);
        a profile whose certs API cannot is a ``PermanentError`` saying so."""
        profile = await self._p()
        if not profile.revokes_by_serial:
            raise PermanentError(
                f"the {profile.name} profile's certs API revokes every certificate of a thing, not one serial"
            )
        await self._send(profile.revoke(serial), f"revoke cert {serial}")

    async def list_serials(self, thing_id: str, *, offset: int = 0, limit: int = 100) -> models.SerialsPage:
        what = f"list cert serials of thing {thing_id}"
        profile = await self._p()
        params: dict[str, Any] = {"offset": offset, "limit": limit} | profile.serials_query(thing_id)
        response = await self._send(profile.serials(thing_id), what, params=params)
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
        headers = {"Content-Type": content_type, "Authorization": f"{self.profile.device_scheme} {thing_key}"}
        what = f"publish to channel {channel_id}"
        response = await send(self._http, ep.method, url, what, content=body, headers=headers)
        raise_for(response, what)
