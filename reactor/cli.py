"""The ``reactor`` command: parse arguments, build Settings, call in. Nothing else lives here."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from reactor.app import build_registry, dlq_command, ops_command, run_daemon
from reactor.demo import run_demo
from reactor.errors import ConfigError, RuleError, SourceError
from reactor.events.decode import Decoder
from reactor.ops.logging import configure_logging, get_logger
from reactor.rules.cli import check_command, dry_run_command
from reactor.settings import Settings, load_settings
from reactor.supermq.client import SuperMQClient


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reactor", description="SuperMQ bootstrap provisioning reactor")
    parser.add_argument("--config", type=Path, help="TOML settings file (see config.example.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="consume the configured event streams until SIGINT/SIGTERM")
    run.add_argument("--rules", type=Path, help="rules directory (default: settings rules.dir)")

    demo = sub.add_parser("demo", help="run an onboarding scenario in memory through the rules (no server)")
    demo.add_argument("--rules", type=Path, help="rules directory (default: settings rules.dir)")

    rules = sub.add_parser("rules", help="work with rule files")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate a rules directory; exit 1 on any error")
    check.add_argument("dir", type=Path, nargs="?", help="rules directory (default: settings rules.dir)")
    test = rules_sub.add_parser(
        "test", help="dry-run event(s) from a file through the rules; no side effects"
    )
    test.add_argument(
        "--event", type=Path, required=True, help="JSON, JSON lines, or redis-cli XRANGE output"
    )
    test.add_argument("--rules", type=Path, help="rules directory (default: settings rules.dir)")
    test.add_argument("--stream", default="supermq.bootstrap", help="stream the events came from")
    test.add_argument(
        "--expect",
        action="append",
        metavar="RULE",
        help="the rules that must match (repeat); exit 1 otherwise",
    )
    status = sub.add_parser("status", help="lag, pending, dead letters, rules, last errors")
    status.add_argument("--json", action="store_true", help="machine-readable")
    history = sub.add_parser("history", help="the audit trail: what the reactor did, as a timeline")
    who = history.add_mutually_exclusive_group(required=True)
    who.add_argument("--thing", help="a device: thing id (or config / external id)")
    who.add_argument("--event", help="a stream entry id")
    who.add_argument("--rule")
    history.add_argument("--since", help="ISO time, or a duration ago: 30m, 2h, 1d")
    history.add_argument("--limit", type=int, default=1000)
    dlq = sub.add_parser("dlq", help="the dead-letter stream: list, show, replay, purge")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_sub.add_parser("list", help="newest records first")
    dlq_list.add_argument("--limit", type=int, default=50)
    dlq_list.add_argument("--rule")
    dlq_list.add_argument("--since", help="ISO time, or a duration ago: 30m, 2h, 1d")
    dlq_show = dlq_sub.add_parser("show", help="one record in full (secrets are masked)")
    dlq_show.add_argument("id")
    replay = dlq_sub.add_parser("replay", help="put records back through the rules (idempotent)")
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--rule")
    replay.add_argument("--since", help="ISO time, or a duration ago: 30m, 2h, 1d")
    replay.add_argument("--rules", type=Path, help="rules directory (default: settings rules.dir)")
    purge = dlq_sub.add_parser("purge", help="delete records (by id, or --all)")
    purge.add_argument("ids", nargs="*", metavar="ID")
    purge.add_argument("--all", action="store_true")
    return parser


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    rules_dir = getattr(args, "rules", None) or getattr(args, "dir", None)
    if rules_dir is not None:
        overrides["rules"] = {"dir": rules_dir}
    return load_settings(args.config, **overrides)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``reactor`` console script."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (ConfigError, RuleError, SourceError) as exc:
        print(f"reactor: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:

    if args.command == "demo":
        settings = _settings(args, source="memory")
        configure_logging("ERROR", "console")

        return asyncio.run(run_demo(settings, sys.stdout))
    settings = _settings(args)
    configure_logging(settings.log.level, settings.log.format)
    if args.command == "dlq":
        return asyncio.run(dlq_command(args, settings, get_logger()))
    if args.command in ("status", "history"):
        configure_logging("ERROR", settings.log.format)
        return asyncio.run(ops_command(args, settings, get_logger()))
    if args.command == "rules":
        configure_logging("ERROR", settings.log.format)
        client = SuperMQClient(settings.supermq)
        registry = build_registry(settings, get_logger(), client)
        if args.rules_command == "check":
            return check_command(settings.rules.dir, registry, sys.stdout)
        return dry_run_command(
            args.event,
            settings.rules.dir,
            registry,
            Decoder(settings.events.families),
            sys.stdout,
            stream=args.stream,
            expect=args.expect,
        )

    return asyncio.run(run_daemon(settings, get_logger()))


if __name__ == "__main__":
    sys.exit(main())
