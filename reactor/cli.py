"""The ``reactor`` command: parse arguments, build Settings, call in. Nothing else lives here."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

from reactor.app import build_registry, run_daemon
from reactor.cliargs import build_parser
from reactor.commands import (
    backfill_command,
    certs_command,
    dlq_command,
    ops_command,
    replay_command,
    simulate_command,
)
from reactor.doctor import doctor_command, unusable_settings
from reactor.errors import ActionError, ConfigError, RuleError, SourceError, StateStoreError
from reactor.events.decode import Decoder
from reactor.ops.jsonout import dry_run_json
from reactor.ops.logging import configure_logging, get_logger
from reactor.provision.commands import run_provision_command
from reactor.redact import redact_text
from reactor.rules import bounds
from reactor.rules.cli import check_command, dry_run_command
from reactor.settings import Settings, load_settings, meant, unknown_variables
from reactor.signals import restore_stop_signals
from reactor.supermq.client import SuperMQClient
from reactor.supervise import TaskFailedError


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    rules_dir = getattr(args, "rules", None) or getattr(args, "dir", None)
    if rules_dir is not None and args.command in ("run", "demo", "rules", "dlq", "replay"):
        overrides["rules"] = {"dir": rules_dir}
    settings = load_settings(args.config, **overrides)
    if args.command not in ("run", "doctor"):  # the daemon logs them (see _dispatch), doctor lists them
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
    args = build_parser().parse_args(argv)
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # here, so that a reader gone away is a BrokenPipeError we handle
    except (ConfigError, RuleError, SourceError, StateStoreError) as exc:  # may name a value: masked
        print(f"reactor: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except ActionError as exc:  # SuperMQ down or refusing (certs inspect --thing, the sweep): a finding
        print(f"reactor: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except TaskFailedError as exc:  # a bug, logged with its stack as reactor.task_failed
        print(f"reactor: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `reactor dlq list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141  # 128 + SIGPIPE, as for any command whose pipe closed
    return code


def _demo(args: argparse.Namespace) -> int:
    from reactor.demo import run_demo  # noqa: PLC0415 - needs the simulator, an optional extra

    settings = _settings(args, source="memory")
    configure_logging("ERROR", "console")
    return asyncio.run(run_demo(settings, sys.stdout))


def _rules(args: argparse.Namespace, settings: Settings) -> int:
    bounds.configure(bounds.Limits.from_settings(settings.rules))  # what the daemon holds rules to
    registry = build_registry(settings, get_logger(), SuperMQClient(settings.supermq))
    if args.rules_command == "check":
        return check_command(settings.rules.dir, registry, sys.stdout)
    dry_run = dry_run_json if args.json else dry_run_command
    return dry_run(
        args.event,
        settings.rules.dir,
        registry,
        Decoder.from_settings(settings.events),
        sys.stdout,
        stream=args.stream,
        expect=args.expect,
    )


_OPERATOR_COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "rules": _rules,
    "dlq": lambda args, settings: asyncio.run(dlq_command(args, settings, get_logger())),
    "certs": lambda args, settings: asyncio.run(certs_command(args, settings, get_logger())),
    "status": lambda args, settings: asyncio.run(ops_command(args, settings, get_logger())),
    "replay": lambda args, settings: asyncio.run(replay_command(args, settings, get_logger())),
    "backfill": lambda args, settings: asyncio.run(backfill_command(args, settings, get_logger())),
    "doctor": lambda args, settings: asyncio.run(doctor_command(args, settings, get_logger())),
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
    try:
        settings = _settings(args)
    except ConfigError as exc:
        if args.command != "doctor":
            raise
        return unusable_settings(exc, args.config, sys.stdout, as_json=args.json)
    if args.command in _OPERATOR_COMMANDS:  # commands for people: only errors in the log
        configure_logging("ERROR", settings.log.format)
        return _OPERATOR_COMMANDS[args.command](args, settings)
    configure_logging(settings.log.level, settings.log.format)
    for name in unknown_variables(os.environ):
        get_logger().warning("settings.unknown_variable", variable=name, ignored=True, hint=_hint(name))
    return asyncio.run(run_daemon(settings, get_logger()))


if __name__ == "__main__":
    sys.exit(main())
