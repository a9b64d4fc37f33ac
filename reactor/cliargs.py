"""The ``reactor`` command line: every verb and option, its help text and examples. Parsing only."""

from __future__ import annotations

import argparse
import textwrap
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

EXIT_CODES = """exit codes (every verb):
  0    ok: done, or every check passed
  1    a finding: a rule error, a mismatch, a failed check, an invalid certificate,
       a record or action that failed (run: the daemon stopped on a failed task)
  2    usage, settings or unreadable input (a missing file, a bad option)
  130  interrupted (Ctrl-C); 141 the output pipe closed (reactor dlq list | head)"""

_SINCE = "ISO time, or a duration ago: 30m, 2h, 1d"
_RULES_DIR = "rules directory (default: settings rules.dir)"
_JSON = "machine-readable JSON on stdout, for scripts"
_LIMIT = "at most this many (the newest)"

_MAIN_EXAMPLES = (
    """examples:
  reactor --config config.toml run        the daemon
  reactor rules check rules/              validate rule files
  reactor status --json                   lag, pending, dead letters, for scripts

"""
    + EXIT_CODES
)


def _verb(sub: Any, name: str, summary: str, examples: str = "") -> argparse.ArgumentParser:
    """A subcommand whose --help shows ``summary``, its ``examples`` and the exit codes."""
    epilog = (f"examples:\n{examples}\n\n" if examples else "") + EXIT_CODES
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(summary, 78),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _rules_commands(sub: Any) -> None:
    rules = _verb(
        sub,
        "rules",
        "work with rule files (offline)",
        "  reactor rules check rules/\n  reactor rules test --event event.json --expect activate",
    )
    rules_sub = rules.add_subparsers(
        dest="rules_command", required=True, metavar="{check,test}", help="what to do"
    )
    check = _verb(
        rules_sub, "check", "validate a rules directory; exit 1 on any error", "  reactor rules check rules/"
    )
    check.add_argument("dir", type=Path, nargs="?", help=_RULES_DIR)
    test = _verb(
        rules_sub,
        "test",
        "dry-run event(s) from a file through the rules; no side effects",
        "  reactor rules test --event event.json\n"
        "  reactor rules test --event xrange.txt --expect activate --expect note --json",
    )
    test.add_argument(
        "--event", type=Path, required=True, help="JSON, JSON lines, or redis-cli XRANGE output"
    )
    test.add_argument("--rules", type=Path, help=_RULES_DIR)
    test.add_argument("--stream", default="supermq.bootstrap", help="stream the events came from")
    test.add_argument("--expect", action="append", metavar="RULE", help="the rules that must match (repeat)")
    test.add_argument("--json", action="store_true", help=_JSON)


def _certs_commands(sub: Any) -> None:
    certs = _verb(
        sub,
        "certs",
        "device certificates: inspect, sweep, dev-ca",
        "  reactor certs inspect device.pem --key device.key\n"
        "  reactor certs inspect --thing THING_ID --json\n  reactor certs sweep --dry-run",
    )
    certs_sub = certs.add_subparsers(
        dest="certs_command", required=True, metavar="{inspect,sweep,dev-ca}", help="what to do"
    )
    inspect = _verb(
        certs_sub,
        "inspect",
        "a readable verdict for a certificate file or a thing's config; exit 1 unless ok",
        "  reactor certs inspect device.pem\n  reactor certs inspect --thing THING_ID --json",
    )
    target = inspect.add_mutually_exclusive_group(required=True)
    target.add_argument("file", nargs="?", type=Path, help="a PEM certificate file (leaf first)")
    target.add_argument("--thing", help="the bootstrap config (thing id) whose certificate to check")
    inspect.add_argument("--key", type=Path, help="the private key file, to check that it matches")
    inspect.add_argument("--json", action="store_true", help=_JSON)
    sweep = _verb(
        certs_sub, "sweep", "validate every config's certificate; rotate those due", "  reactor certs sweep"
    )
    sweep.add_argument("--dry-run", action="store_true", help="report only; change nothing")
    dev_ca = _verb(certs_sub, "dev-ca", "create a development CA (private key never committed)")
    dev_ca.add_argument("--dir", type=Path, help="where (default: settings certs.local_ca_dir)")


def _ops_commands(sub: Any) -> None:
    status = _verb(
        sub,
        "status",
        "lag, pending, dead letters, rules, last errors",
        "  reactor status\n  reactor status --json | jq '.streams[].lag'",
    )
    status.add_argument("--json", action="store_true", help=_JSON)
    history = _verb(
        sub,
        "history",
        "the audit trail: what the reactor did, as a timeline",
        "  reactor history --thing THING_ID --since 2h\n  reactor history --rule activate --json",
    )
    who = history.add_mutually_exclusive_group(required=True)
    who.add_argument("--thing", help="a device: thing id (or config / external id)")
    who.add_argument("--event", help="a stream entry id")
    who.add_argument("--rule", help="a rule name")
    history.add_argument("--since", help=_SINCE)
    history.add_argument("--limit", type=int, default=1000, help=_LIMIT + " (default: 1000)")
    history.add_argument("--json", action="store_true", help=_JSON)


def _doctor_command(sub: Any) -> None:
    doctor = _verb(
        sub,
        "doctor",
        "check the setup in order (config, event store, platform, rules, trust dir, state store); "
        "print each check with the fix for a failure; exit 0 only when all pass",
        "  reactor --config config.toml doctor\n  reactor doctor --json",
    )
    doctor.add_argument("--json", action="store_true", help=_JSON)


def _dlq_commands(sub: Any) -> None:
    dlq = _verb(
        sub,
        "dlq",
        "the dead-letter stream: list, show, replay, purge",
        "  reactor dlq list --since 2h\n  reactor dlq show 1700000000000-0\n"
        "  reactor dlq replay --rule activate",
    )
    dlq_sub = dlq.add_subparsers(
        dest="dlq_command", required=True, metavar="{list,show,replay,purge}", help="what to do"
    )
    listing = _verb(dlq_sub, "list", "newest records first", "  reactor dlq list --rule activate --json")
    listing.add_argument("--limit", type=int, default=50, help=_LIMIT + " (default: 50)")
    listing.add_argument("--rule", help="only the records of this rule")
    listing.add_argument("--since", help=_SINCE)
    listing.add_argument("--json", action="store_true", help=_JSON)
    show = _verb(dlq_sub, "show", "one record in full (secrets are masked); exit 1 when there is none")
    show.add_argument("id", help="the record id (as dlq list prints it)")
    show.add_argument("--json", action="store_true", help=_JSON + " (one line)")
    replay = _verb(
        dlq_sub,
        "replay",
        "put records back through the rules (idempotent); exit 1 when one fails again",
        "  reactor dlq replay 1700000000000-0\n  reactor dlq replay --since 1h",
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="record ids (none: every record that matches)")
    replay.add_argument("--rule", help="only the records of this rule")
    replay.add_argument("--since", help=_SINCE)
    replay.add_argument("--rules", type=Path, help=_RULES_DIR)
    purge = _verb(dlq_sub, "purge", "delete records (by id, or --all)")
    purge.add_argument("ids", nargs="*", metavar="ID", help="record ids to delete")
    purge.add_argument("--all", action="store_true", help="delete every record")


def _replay_commands(sub: Any) -> None:
    replay = _verb(
        sub,
        "replay",
        "events from a file or a stream range through the rules (dry run unless --apply)",
        "  reactor replay events.jsonl\n"
        "  reactor replay --stream supermq.bootstrap --from 2024-01-01T00:00:00Z --to + --apply",
    )
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
    backfill = _verb(
        sub,
        "backfill",
        "a new consumer group from the start of the streams, until caught up",
        "  reactor backfill --group reactor-backfill",
    )
    backfill.add_argument("--group", required=True, help="the new consumer group's name")


def _provision_commands(sub: Any) -> None:
    """``reactor enroll check EXTERNAL_ID`` and ``reactor provision EXTERNAL_ID [--dry-run]``."""
    enroll = _verb(sub, "enroll", "zero-touch enrollments: which one applies to a device")
    enroll_sub = enroll.add_subparsers(
        dest="enroll_command", required=True, metavar="COMMAND", help="one of:"
    )
    check = _verb(
        enroll_sub,
        "check",
        "the enrollment, template and plan (keys masked); exit 1 if none applies",
        "  reactor --config config.toml enroll check sensor-0042",
    )
    check.add_argument("external_id", help="the device's external id, as it asks for its bootstrap")
    check.add_argument("--json", action="store_true", help="the plan, or why not, as one JSON document")
    provision = _verb(
        sub,
        "provision",
        "provision an enrolled device by hand, as the zero-touch rule does",
        "  reactor --config config.toml provision sensor-0042 --dry-run",
    )
    provision.add_argument("external_id", help="the device's external id")
    provision.add_argument("--dry-run", action="store_true", help="look up what exists; create nothing")


def _port_base(text: str) -> int:
    """The first of the simulator's consecutive ports (0: SuperMQ's own), as a usage error if off."""
    try:
        base = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 0 <= base <= 65535 - 16:
        raise argparse.ArgumentTypeError(f"{base} is out of range: 0 (SuperMQ's ports) or 1-65519")
    return base


def _simulator_command(sub: Any) -> None:
    sim = _verb(
        sub,
        "simulate-supermq",
        "SuperMQ's HTTP APIs on loopback (in-memory), for trials; log in as admin@example.com with"
        " the trial secret 12345678 (supermq.identity / supermq.secret)",
        "  reactor simulate-supermq --seed",
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    sim.add_argument(
        "--port-base",
        type=_port_base,
        default=0,
        help="consecutive ports from here (default: SuperMQ's own: users 9002, things 9000, ...)",
    )
    sim.add_argument(
        "--profile",
        choices=("things", "mainflux", "clients"),
        default="things",
        help="the era it plays: things (Magistrala v0.14, default), mainflux (2023), clients (SuperMQ HEAD)",
    )
    sim.add_argument("--seed", action="store_true", help="start with the demo's device, channels and config")
    sim.add_argument(
        "--no-validate", action="store_true", help="do not check requests against the OpenAPI specs"
    )


def package_version() -> str:
    try:
        return version("supermq-reactor")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reactor",
        description="SuperMQ bootstrap provisioning reactor: event streams -> TOML rules -> actions",
        epilog=_MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (see config.example.toml)")
    parser.add_argument(
        "--version", action="version", version=f"reactor {package_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")
    run = _verb(
        sub,
        "run",
        "consume the configured event streams until SIGINT/SIGTERM",
        "  reactor --config config.toml run\n  REACTOR_REDIS__URL=redis://redis:6379/0 reactor run",
    )
    run.add_argument("--rules", type=Path, help=_RULES_DIR)
    demo = _verb(sub, "demo", "run an onboarding scenario through the rules (no server needed)")
    demo.add_argument("--rules", type=Path, help=_RULES_DIR)
    for add in (
        _rules_commands,
        _certs_commands,
        _ops_commands,
        _doctor_command,
        _dlq_commands,
        _replay_commands,
        _simulator_command,
        _provision_commands,
    ):
        add(sub)
    return parser
