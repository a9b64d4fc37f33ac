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
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from cryptography import x509

from reactor.actions.base import ActionRegistry
from reactor.app import build_registry, build_state_store
from reactor.certs.policy import policy_from
from reactor.doctor.checklist import TIMEOUT_S, Check, Checklist, print_checks, safe_url
from reactor.doctor.platform import platform
from reactor.errors import ReactorError, RuleSetError
from reactor.events.catalogue import CANONICAL_OPERATIONS
from reactor.events.echoes import is_read
from reactor.ops.status import gather
from reactor.rules.loader import load_rules
from reactor.settings import Settings, meant, unknown_variables
from reactor.supermq.client import SuperMQClient


def _config(out: Checklist, settings: Settings, config_file: Path | None, environ: Mapping[str, str]) -> None:
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


_MISSING_FIX = {
    "redis": "run `reactor run` once (it creates the group, at redis.start_id), or check redis.streams "
    "and redis.group against the streams the platform writes",
    "nats": "run `reactor run` once (it creates the durable consumer nats.durable, and the stream when "
    "nats.create_stream is true), or check nats.stream against the platform's stream",
    "rabbitmq": "run `reactor run` once (it declares rabbitmq.queue and binds it), or check rabbitmq.queue",
}


def _scrub(message: str, settings: Settings) -> str:
    """An error message with each configured URL's password masked, wherever it is quoted."""
    for url in (settings.redis.url, settings.nats.url, settings.rabbitmq.url):
        message = message.replace(url, safe_url(url))
        password = urlsplit(url).password
        if password:
            message = message.replace(password, "***")
    return message


async def _event_store(out: Checklist, settings: Settings, registry: ActionRegistry) -> None:
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
            f"{where}: {_scrub(str(exc), settings) or 'no answer'}",
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
                _MISSING_FIX[settings.source],
            )
            continue
        lag = "unknown" if s.lag is None else str(s.lag)
        out.add("event store", f"stream {s.stream}", True, f"group {s.group}: lag {lag}, pending {s.pending}")
    out.add("event store", "dead letters", True, f"{status.dead_letters} record(s) (reactor dlq list)")


def _rules(out: Checklist, settings: Settings, registry: ActionRegistry) -> None:
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


def _trust(out: Checklist, settings: Settings) -> None:
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


def _crl(out: Checklist, path: Path, now: dt.datetime) -> None:
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


_STATE_FIX = {
    "sqlite": "make state.path readable and writable by the reactor (one process only), or set state.path",
    "redis": "start Redis, or point redis.url (REACTOR_REDIS__URL) at it: the redis state store lives there",
    "memory": "",
}


async def _state(out: Checklist, settings: Settings) -> None:
    backend, path = settings.state.backend, settings.state.path
    where = f"{backend} {path if backend == 'sqlite' else safe_url(settings.redis.url)}"
    if backend == "sqlite" and not path.exists():  # doctor creates nothing
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
        said = _scrub(str(exc), settings) or f"no answer within {TIMEOUT_S:g} s"
        out.add("state", "state store", False, f"{where}: {said}", _STATE_FIX[backend])
        return
    out.add("state", "state store", True, where)


async def diagnose(
    settings: Settings, registry: ActionRegistry, config_file: Path | None, environ: Mapping[str, str]
) -> list[Check]:
    """Every check, in order."""
    out = Checklist()
    _config(out, settings, config_file, environ)
    steps: list[Callable[[], Awaitable[None] | None]] = [
        lambda: _event_store(out, settings, registry),
        lambda: platform(out, settings),
        lambda: _rules(out, settings, registry),
        lambda: _trust(out, settings),
        lambda: _state(out, settings),
    ]
    for step in steps:
        pending = step()
        if pending is not None:
            await pending
    return out.checks


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
