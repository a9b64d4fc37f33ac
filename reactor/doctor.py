"""``reactor doctor``: the whole setup checked in order, each failure with its fix.

Order: the config file and environment, the event store (reachable, streams and group, lag), the
platform (each service answers, the profile, the login, the refresh), the rules (load clean, the
operations nothing listens to), the trust directory (anchors, CRLs), the state store. A check that
depends on one that failed is not run. Nothing is changed anywhere: the login is a login, the
state store is read. Credentials and URLs' passwords are never printed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis.asyncio as aioredis
from cryptography import x509
from rich.markup import escape

from reactor.actions.base import ActionRegistry
from reactor.app import build_registry, build_state_store
from reactor.certs.policy import policy_from
from reactor.errors import ActionError, ReactorError, RuleSetError
from reactor.events.catalogue import CANONICAL_OPERATIONS
from reactor.events.echoes import is_read
from reactor.ops.console import console
from reactor.ops.redact import redact_text
from reactor.ops.status import gather
from reactor.rules.loader import load_rules
from reactor.settings import Settings, meant, unknown_variables
from reactor.supermq.client import SuperMQClient
from reactor.supermq.http import build_http, join, send
from reactor.supermq.profile import ThingsProfile

#: Per check: no answer within this long is a failure (doctor never hangs on a dead server).
TIMEOUT_S = 5.0
_SERVICES = ("users", "things", "bootstrap", "certs", "http")


@dataclass
class Check:
    """One line of the checklist; ``fix`` says what to do when it failed."""

    section: str
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""


class _List:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, section: str, name: str, ok: bool, detail: str = "", fix: str = "") -> bool:
        self.checks.append(Check(section, name, ok, detail, "" if ok else fix))
        return ok


def safe_url(url: str) -> str:
    """``url`` without the password in it (``redis://:***@host``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _config(out: _List, settings: Settings, config_file: Path | None, environ: Mapping[str, str]) -> None:
    where = str(config_file) if config_file else "no --config file: defaults and REACTOR_* variables"
    out.add("config", "settings load", True, where)
    for name in unknown_variables(environ):
        guess = meant(name)
        out.add(
            "config",
            f"environment {name}",
            False,
            "not a setting; ignored",
            f"rename it to {guess}" if guess else "settings are REACTOR_<SECTION>__<KEY>; remove it",
        )


def _store_url(settings: Settings) -> str:
    if settings.source == "nats":
        return safe_url(settings.nats.url)
    if settings.source == "rabbitmq":
        return safe_url(settings.rabbitmq.url)
    return safe_url(settings.redis.url)


async def _event_store(out: _List, settings: Settings, registry: ActionRegistry) -> None:
    if settings.source == "memory":
        out.add("event store", "source", True, "memory (nothing to reach)")
        return
    where = f"{settings.source} {_store_url(settings)}"
    client = (
        aioredis.Redis.from_url(settings.redis.url, decode_responses=True, socket_connect_timeout=TIMEOUT_S)
        if settings.source == "redis"
        else None
    )
    try:
        async with asyncio.timeout(TIMEOUT_S * 2):
            status = await gather(settings, client, registry, None)
    except (ReactorError, OSError, TimeoutError) as exc:
        out.add(
            "event store",
            "reachable",
            False,
            f"{where}: {safe_url(str(exc)) or 'no answer'}",
            f"start the event store, or point {settings.source}.url (REACTOR_{settings.source.upper()}__URL) "
            "at it",
        )
        return
    finally:
        if client is not None:
            await client.aclose()
    out.add("event store", "reachable", True, where)
    for s in status.streams:
        if not s.exists:
            out.add(
                "event store",
                f"stream {s.stream}",
                False,
                f"no such stream, or no group {s.group!r} on it",
                "run `reactor run` once (it creates the group), or check the streams and group settings "
                "against what the platform publishes",
            )
            continue
        lag = "unknown" if s.lag is None else str(s.lag)
        out.add("event store", f"stream {s.stream}", True, f"group {s.group}: lag {lag}, pending {s.pending}")
    out.add("event store", "dead letters", True, f"{status.dead_letters} record(s) (reactor dlq list)")


async def _platform(out: _List, settings: Settings) -> None:
    s = settings.supermq
    http = build_http(s)
    try:
        answered = True
        for service in _SERVICES:
            answered &= await _answers(out, http, service, getattr(s, f"{service}_url"))
        if not answered:
            return
        client = SuperMQClient(s, http=http)
        try:
            profile = await client.resolve_profile()
        except ActionError as exc:
            out.add("platform", "profile", False, str(exc), "set supermq.profile (things or mainflux)")
            return
        out.add("platform", "profile", True, f"{type(profile).__name__}: {client.profile_reason}")
        await _login(out, http, settings)
    finally:
        await http.aclose()


async def _answers(out: _List, http: Any, service: str, url: str) -> bool:
    try:
        async with asyncio.timeout(TIMEOUT_S):
            response = await send(http, "GET", join(httpx.URL(url), "/health", None), f"{service} /health")
    except (ActionError, TimeoutError) as exc:
        return out.add(
            "platform",
            f"{service} service",
            False,
            f"{safe_url(url)}: {exc or 'no answer'}",
            f"start SuperMQ's {service} service, or set supermq.{service}_url",
        )
    return out.add(
        "platform",
        f"{service} service",
        response.status_code < 500,
        f"{safe_url(url)}/health: {response.status_code}",
        f"SuperMQ's {service} service answers {response.status_code}: see its logs",
    )


async def _login(out: _List, http: Any, settings: Settings) -> None:
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
    profile = ThingsProfile()
    body = {"identity": s.identity, "secret": s.secret.get_secret_value()}
    if s.domain_id:
        body["domain_id"] = s.domain_id
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
        {"domain_id": s.domain_id} if s.domain_id else {},
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


def _rules(out: _List, settings: Settings, registry: ActionRegistry) -> None:
    try:
        rules = load_rules(settings.rules.dir, registry)
    except RuleSetError as exc:
        out.add(
            "rules",
            f"load {settings.rules.dir}",
            False,
            "; ".join(str(e) for e in exc.errors[:5]) + (" ..." if len(exc.errors) > 5 else ""),
            f"fix each error at its file:line (reactor rules check {settings.rules.dir})",
        )
        return
    out.add(
        "rules", f"load {settings.rules.dir}", True, f"{len(rules)} rule(s) in {len(rules.files)} file(s)"
    )
    patterns = [p for rule in rules.rules for p in rule.on]

    unheard = sorted(
        op for op in CANONICAL_OPERATIONS if not is_read(op) and not any(fnmatchcase(op, p) for p in patterns)
    )
    out.add("rules", "operations nothing listens to", True, ", ".join(unheard) or "none")


def _trust(out: _List, settings: Settings) -> None:
    directory = settings.certs.trust_dir
    policy = policy_from(settings.certs)
    fix = (
        f"put the CA certificates that issue device certificates (PEM) in {directory} "
        "(certs.trust_dir); for development: reactor certs dev-ca"
    )
    if not out.add(
        "trust", f"anchors in {directory}", bool(policy.anchors), f"{len(policy.anchors)} anchor(s)", fix
    ):
        return
    now = dt.datetime.now(dt.UTC)
    for anchor in policy.anchors:
        name = anchor.subject.rfc4514_string()
        ends = anchor.not_valid_after_utc
        out.add(
            "trust",
            f"anchor {name}",
            anchor.not_valid_before_utc <= now < ends,
            f"valid until {ends:%Y-%m-%d}",
            f"replace the anchor {name} in {directory}: it is not valid now",
        )
    for path in policy.crl_paths:
        if path.exists():
            _crl(out, path, now)


def _crl(out: _List, path: Path, now: dt.datetime) -> None:
    try:
        data = path.read_bytes()
        crl = (
            x509.load_pem_x509_crl(data)
            if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_crl(data)
        )
    except (OSError, ValueError) as exc:
        out.add("trust", f"CRL {path.name}", False, str(exc), f"replace {path} with a PEM or DER CRL")
        return
    due = crl.next_update_utc
    out.add(
        "trust",
        f"CRL {path.name}",
        due is None or due > now,
        f"next update {due:%Y-%m-%d %H:%M}" if due else "no next update",
        f"fetch a fresh CRL from its issuer into {path}",
    )


async def _state(out: _List, settings: Settings) -> None:
    where = settings.state.backend + (
        f" {settings.state.path}" if settings.state.backend == "sqlite" else f" {_store_url(settings)}"
    )
    path = settings.state.path
    if settings.state.backend == "sqlite" and not path.exists():  # doctor creates nothing
        parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
        out.add(
            "state",
            "state store",
            os.access(parent, os.W_OK),
            f"{where}: not created yet (the daemon creates it)",
            f"make {parent} writable for the reactor, or set state.path",
        )
        return
    try:
        store = build_state_store(settings)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await store.completed("reactor-doctor/0-0")
        finally:
            await store.close()
    except Exception as exc:  # whatever the backend raises is the finding, reported, not raised
        out.add("state", "state store", False, f"{where}: {exc or 'no answer'}", "check the [state] settings")
        return
    out.add("state", "state store", True, where)


async def diagnose(
    settings: Settings, registry: ActionRegistry, config_file: Path | None, environ: Mapping[str, str]
) -> list[Check]:
    """Every check, in order."""
    out = _List()
    _config(out, settings, config_file, environ)
    steps: list[Callable[[], Awaitable[None] | None]] = [
        lambda: _event_store(out, settings, registry),
        lambda: _platform(out, settings),
        lambda: _rules(out, settings, registry),
        lambda: _trust(out, settings),
        lambda: _state(out, settings),
    ]
    for step in steps:
        pending = step()
        if pending is not None:
            await pending
    return out.checks


def print_checks(checks: list[Check], out: TextIO, *, as_json: bool = False) -> int:
    """The checklist (or JSON); 0 when every check passed, else 1."""
    failed = sum(not c.ok for c in checks)
    if as_json:
        document: dict[str, Any] = {"ok": not failed, "checks": [asdict(c) for c in checks]}
        print(json.dumps(document, indent=2), file=out)
        return 1 if failed else 0
    shown = console(out)
    section = ""
    for c in checks:
        if c.section != section:
            section = c.section
            shown.print(section, style="bold")
        mark = "[green]ok  [/]" if c.ok else "[bold red]FAIL[/]"
        shown.print(
            f"  [{mark}] {escape(c.name)}" + (f": {escape(c.detail)}" if c.detail else ""), soft_wrap=True
        )
        if c.fix:
            shown.print(f"         [yellow]fix:[/] {escape(c.fix)}", soft_wrap=True)
    shown.print(f"\n{len(checks) - failed} of {len(checks)} check(s) passed", soft_wrap=True)
    return 1 if failed else 0


async def doctor_command(args: Any, settings: Settings, logger: Any) -> int:
    """``reactor doctor [--json]``."""
    registry = build_registry(settings, logger, SuperMQClient(settings.supermq))
    checks = await diagnose(settings, registry, args.config, os.environ)
    return print_checks(checks, sys.stdout, as_json=args.json)


def unusable_settings(error: Exception, config_file: Path | None, out: TextIO, *, as_json: bool) -> int:
    """``reactor doctor`` when the settings do not load: that one check, failed, with its fix;
    exit 2 (unreadable input), as for every verb."""
    where = f"{config_file}" if config_file else "REACTOR_* environment"
    fix = f"correct what is named above in {where} (config.example.toml documents every key and its default)"
    print_checks([Check("config", "settings load", False, str(error), fix)], out, as_json=as_json)
    return 2
