"""The ``reactor`` command: parse arguments, build Settings, call in. Nothing else lives here."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reactor.app import build_registry, run_daemon
from reactor.commands import (
    backfill_command,
    certs_command,
    dlq_command,
    ops_command,
    replay_command,
    simulate_command,
)
from reactor.demo import run_demo
from reactor.errors import ConfigError, RuleError, SourceError
from reactor.events.decode import Decoder
from reactor.ops.logging import configure_logging, get_logger
from reactor.provision.commands import add_provision_commands, run_provision_command
from reactor.rules.cli import check_command, dry_run_command
from reactor.settings import Settings, load_settings, meant, unknown_variables
from reactor.signals import restore_stop_signals
from reactor.supermq.client import SuperMQClient
from reactor.supervise import TaskFailedError

_SINCE = "ISO time, or a duration ago: 30m, 2h, 1d"
_RULES_DIR = "rules directory (default: settings rules.dir)"


def _rules_commands(sub: Any) -> None:
    rules = sub.add_parser("rules", help="work with rule files (offline)")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate a rules directory; exit 1 on any error")
    check.add_argument("dir", type=Path, nargs="?", help=_RULES_DIR)
    test = rules_sub.add_parser(
        "test", help="dry-run event(s) from a file through the rules; no side effects"
    )
    test.add_argument(
        "--event", type=Path, required=True, help="JSON, JSON lines, or redis-cli XRANGE output"
    )
    test.add_argument("--rules", type=Path, help=_RULES_DIR)
    test.add_argument("--stream", default="supermq.bootstrap", help="stream the events came from")
    test.add_argument("--expect", action="append", metavar="RULE", help="the rules that must match (repeat)")


def _certs_commands(sub: Any) -> None:
    certs = sub.add_parser("certs", help="device certificates: inspect, sweep, dev-ca")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    inspect = certs_sub.add_parser(
        "inspect", help="a readable verdict for a certificate file or a thing's config"
    )
    target = inspect.add_mutually_exclusive_group(required=True)
    target.add_argument("file", nargs="?", type=Path)
    target.add_argument("--thing", help="the bootstrap config (thing id) whose certificate to check")
    inspect.add_argument("--key", type=Path, help="the private key file, to check that it matches")
    sweep = certs_sub.add_parser("sweep", help="validate every config's certificate; rotate those due")
    sweep.add_argument("--dry-run", action="store_true", help="report only; change nothing")
    dev_ca = certs_sub.add_parser("dev-ca", help="create a development CA (private key never committed)")
    dev_ca.add_argument("--dir", type=Path, help="where (default: settings certs.local_ca_dir)")


def _ops_commands(sub: Any) -> None:
    status = sub.add_parser("status", help="lag, pending, dead letters, rules, last errors")
    status.add_argument("--json", action="store_true", help="machine-readable")
    history = sub.add_parser("history", help="the audit trail: what the reactor did, as a timeline")
    who = history.add_mutually_exclusive_group(required=True)
    who.add_argument("--thing", help="a device: thing id (or config / external id)")
    who.add_argument("--event", help="a stream entry id")
    who.add_argument("--rule")
    history.add_argument("--since", help=_SINCE)
    history.add_argument("--limit", type=int, default=1000)


def _dlq_commands(sub: Any) -> None:
    dlq = sub.add_parser("dlq", help="the dead-letter stream: list, show, replay, purge")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_sub.add_parser("list", help="newest records first")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--rule")
    listing.add_argument("--since", help=_SINCE)
    show = dlq_sub.add_parser("show", help="one record in full (secrets are masked)")
    show.add_argument("id")
    replay = dlq_sub.add_parser("replay", help="put records back through the rules (idempotent)")
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--rule")
    replay.add_argument("--since", help=_SINCE)
    replay.add_argument("--rules", type=Path, help=_RULES_DIR)
    purge = dlq_sub.add_parser("purge", help="delete records (by id, or --all)")
    purge.add_argument("ids", nargs="*", metavar="ID")
    purge.add_argument("--all", action="store_true")


def _replay_commands(sub: Any) -> None:
    replay = sub.add_parser("replay", help="events from a file or a stream range through the rules (dry run)")
    replay.add_argument(
        "file", nargs="?", type=Path, help="JSON lines, NATS Subject: blocks or redis-cli output"
    )
    replay.add_argument(
        "--stream", help="the stream to read a range of (or: the stream a file's events came from)"
    )
    replay.add_argument("--from", dest="start", default="-", help="entry id or ISO time (default: the start)")
    replay.add_argument("--to", dest="end", default="+", help="entry id or ISO time (default: the end)")
    replay.add_argument(
        "--apply", action="store_true", help="act (as redeliveries: completed steps are skipped)"
    )
    replay.add_argument("--rules", type=Path, help=_RULES_DIR)
    backfill = sub.add_parser(
        "backfill", help="a new consumer group from the start of the streams, until caught up"
    )
    backfill.add_argument("--group", required=True)


def _simulator_command(sub: Any) -> None:
    sim = sub.add_parser("simulate-supermq", help="SuperMQ's HTTP APIs on loopback (in-memory), for trials")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument(
        "--port-base",
        type=int,
        default=0,
        help="consecutive ports from here (default: SuperMQ's own: users 9002, things 9000, ...)",
    )
    sim.add_argument("--seed", action="store_true", help="start with the demo's device, channels and config")
    sim.add_argument(
        "--no-validate", action="store_true", help="do not check requests against the OpenAPI specs"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reactor", description="SuperMQ bootstrap provisioning reactor")
    parser.add_argument("--config", type=Path, help="TOML settings file (see config.example.toml)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume the configured event streams until SIGINT/SIGTERM")
    run.add_argument("--rules", type=Path, help=_RULES_DIR)
    demo = sub.add_parser("demo", help="run an onboarding scenario through the rules (no server needed)")
    demo.add_argument("--rules", type=Path, help=_RULES_DIR)
    for add in (
        _rules_commands,
        _certs_commands,
        _ops_commands,
        _dlq_commands,
        _replay_commands,
        _simulator_command,
        add_provision_commands,
    ):
        add(sub)
    return parser


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    rules_dir = getattr(args, "rules", None) or getattr(args, "dir", None)
    if rules_dir is not None and args.command in ("run", "demo", "rules", "dlq", "replay"):
        overrides["rules"] = {"dir": rules_dir}
    settings = load_settings(args.config, **overrides)
    if args.command != "run":  # the daemon logs them (see _dispatch)
        for name in unknown_variables(os.environ):
            print(
                f"reactor: warning: {name} is not a setting and is ignored ({_hint(name)})", file=sys.stderr
            )
    return settings


def _hint(name: str) -> str:
    """What a ``REACTOR_`` variable that names no setting probably meant (a typo, usually)."""
    guess = meant(name)
    return (
        f"did you mean {guess}?"
        if guess
        else "settings are REACTOR_<SECTION>__<KEY>, e.g. REACTOR_REDIS__URL"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``reactor`` console script."""
    args = _parser().parse_args(argv)
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # here, so that a reader gone away is a BrokenPipeError we handle
    except (ConfigError, RuleError, SourceError) as exc:
        print(f"reactor: {exc}", file=sys.stderr)
        return 2
    except TaskFailedError as exc:  # a bug, logged with its stack as reactor.task_failed
        print(f"reactor: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `reactor dlq list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141  # 128 + SIGPIPE, as for any command whose pipe closed
    return code


def _demo(args: argparse.Namespace) -> int:
    settings = _settings(args, source="memory")
    configure_logging("ERROR", "console")
    return asyncio.run(run_demo(settings, sys.stdout))


def _rules(args: argparse.Namespace, settings: Settings) -> int:
    registry = build_registry(settings, get_logger(), SuperMQClient(settings.supermq))
    if args.rules_command == "check":
        return check_command(settings.rules.dir, registry, sys.stdout)
    return dry_run_command(
        args.event,
        settings.rules.dir,
        registry,
        Decoder.from_settings(settings.events),
        sys.stdout,
        stream=args.stream,
        expect=args.expect,
    )


_QUIET: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "rules": _rules,
    "dlq": lambda args, settings: asyncio.run(dlq_command(args, settings, get_logger())),
    "certs": lambda args, settings: asyncio.run(certs_command(args, settings, get_logger())),
    "status": lambda args, settings: asyncio.run(ops_command(args, settings, get_logger())),
    "replay": lambda args, settings: asyncio.run(replay_command(args, settings, get_logger())),
    "backfill": lambda args, settings: asyncio.run(backfill_command(args, settings, get_logger())),
    "history": lambda args, settings: asyncio.run(ops_command(args, settings, get_logger())),
    "enroll": lambda args, settings: run_provision_command(args, settings, sys.stdout),
    "provision": lambda args, settings: run_provision_command(args, settings, sys.stdout),
}


def _dispatch(args: argparse.Namespace) -> int:
    if args.command != "run":
        restore_stop_signals()  # only the daemon stops cleanly on a signal that came while starting
    if args.command == "demo":
        return _demo(args)
    if args.command == "simulate-supermq":
        configure_logging("ERROR", "console")
        return asyncio.run(simulate_command(args))
    settings = _settings(args)
    if args.command in _QUIET:  # commands for people: only errors in the log
        configure_logging("ERROR", settings.log.format)
        return _QUIET[args.command](args, settings)
    configure_logging(settings.log.level, settings.log.format)
    for name in unknown_variables(os.environ):
        get_logger().warning("settings.unknown_variable", variable=name, ignored=True, hint=_hint(name))
    return asyncio.run(run_daemon(settings, get_logger()))


if __name__ == "__main__":
    sys.exit(main())
