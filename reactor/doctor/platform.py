"""The doctor's platform checks: each service answers, the profile, the login, the refresh."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from reactor.doctor.checklist import TIMEOUT_S, Checklist, safe_url
from reactor.errors import ActionError, ConfigError
from reactor.redact import redact_text
from reactor.settings import Settings
from reactor.supermq.client import SuperMQClient
from reactor.supermq.http import build_http, join, send
from reactor.supermq.profile import ThingsProfile

#: What every profile calls first: the login, and /health for ``auto``.
_FIRST = ("users", "bootstrap")
#: The rest of the services each profile calls (the clients profile: clients and channels).
_REST = {"clients": ("clients", "channels", "certs", "http")}
_REST_DEFAULT = ("things", "certs", "http")


async def platform(out: Checklist, settings: Settings) -> None:
    s = settings.supermq
    http = build_http(s)
    try:
        if not await _all_answer(out, http, s, _FIRST):
            return
        client = SuperMQClient(s, http=http)
        try:
            profile = await client.resolve_profile()
        except (ActionError, ConfigError) as exc:
            fix = "set supermq.profile (things, mainflux or clients; clients needs supermq.domain_id)"
            out.add("platform", "profile", False, str(exc), fix)
            return
        out.add("platform", "profile", True, f"{profile.name}: {client.profile_reason}")
        if not await _all_answer(out, http, s, _REST.get(profile.name, _REST_DEFAULT)):
            return
        await _login(out, http, settings, profile)
    finally:
        await http.aclose()


async def _all_answer(out: Checklist, http: Any, s: Any, services: tuple[str, ...]) -> bool:
    answered = True
    for service in services:
        answered &= await _answers(out, http, service, getattr(s, f"{service}_url"))
    return answered


async def _answers(out: Checklist, http: Any, service: str, url: str) -> bool:
    try:
        async with asyncio.timeout(TIMEOUT_S):
            response = await send(http, "GET", join(httpx.URL(url), "/health", None), f"{service} /health")
    except (ActionError, TimeoutError) as exc:
        return out.add(
            "platform",
            f"{service} service",
            False,
            f"{safe_url(url)}: {str(exc) or f'no answer within {TIMEOUT_S:g} s'}",
            f"start SuperMQ's {service} service, or set supermq.{service}_url",
        )
    return out.add(
        "platform",
        f"{service} service",
        response.status_code < 500,
        f"{safe_url(url)}/health: {response.status_code}",
        f"SuperMQ's {service} service answers {response.status_code}: see its logs",
    )


async def _login(out: Checklist, http: Any, settings: Settings, profile: ThingsProfile) -> None:
    s = settings.supermq
    if not s.identity:
        detail = "a static supermq.token, no identity to log in with" if s.token.get_secret_value() else ""
        out.add(
            "platform",
            "credentials",
            bool(detail),
            detail or "neither supermq.token nor supermq.identity/secret is set",
            "set supermq.identity and supermq.secret (REACTOR_SUPERMQ__SECRET), or supermq.token",
        )
        return
    body = profile.login_body(s.identity, s.secret.get_secret_value(), s.domain_id)
    tokens = await _post(http, s.users_url, profile.token_issue().path, body, {})
    if not out.add(
        "platform",
        "credentials log in",
        isinstance(tokens, dict),
        f"as {s.identity}" if isinstance(tokens, dict) else f"as {s.identity}: {tokens}",
        "check supermq.identity and supermq.secret (and supermq.domain_id on Magistrala)",
    ):
        return
    assert isinstance(tokens, dict)
    refresh = str(tokens.get("refresh_token") or "")
    if not refresh:
        out.add("platform", "token refreshes", True, "no refresh token issued: the reactor logs in again")
        return
    again = await _post(
        http,
        s.users_url,
        profile.token_refresh().path,
        profile.refresh_body(s.domain_id),
        {"Authorization": f"Bearer {refresh}"},
    )
    out.add(
        "platform",
        "token refreshes",
        isinstance(again, dict),
        "" if isinstance(again, dict) else str(again),
        "the users service refuses its own refresh token: check its auth service and clocks",
    )


async def _post(http: Any, base: str, path: str, body: dict[str, str], headers: dict[str, str]) -> Any:
    """The answer's JSON object, or a line saying why there is none (never the credentials)."""
    try:
        async with asyncio.timeout(TIMEOUT_S):
            response = await send(
                http, "POST", join(httpx.URL(base), path, None), "users token", json=body, headers=headers
            )
    except (ActionError, TimeoutError) as exc:
        return f"no answer ({exc})" if str(exc) else "no answer"
    try:
        document = json.loads(response.content)
    except ValueError:
        document = None
    if response.status_code >= 300:
        said = document.get("message") or document.get("error") if isinstance(document, dict) else None
        return f"refused with {response.status_code}" + (f": {redact_text(str(said))}" if said else "")
    return document if isinstance(document, dict) and document.get("access_token") else "no access_token"
