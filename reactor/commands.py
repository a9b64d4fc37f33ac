"""The operator's commands beside the daemon: ``dlq``, ``status``, ``history``, ``certs``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog

from reactor.app import Reactor, build_audit, build_echoes, build_registry, build_sealer, build_source
from reactor.certs.ca import LocalCA
from reactor.certs.policy import policy_from
from reactor.certs.rotation import Rotator, device_identity
from reactor.certs.sweep import print_summary, sweep
from reactor.certs.validate import Policy, validate
from reactor.delivery.dlq import ReplaySource, parse_since, print_record, print_records
from reactor.delivery.replay import (
    ReplaySummary,
    deliveries_from_file,
    deliveries_from_stream,
    dry_run_all,
    print_replay,
    wait_caught_up,
)
from reactor.delivery.state import StateStore
from reactor.errors import ConfigError
from reactor.events.decode import Decoder
from reactor.events.textforms import read_named_file
from reactor.ops.audit import print_history
from reactor.ops.console import is_terminal, progress, table
from reactor.ops.jsonout import dump, history_document, record_document, records_document, verdict_document
from reactor.ops.status import gather, print_status
from reactor.ops.tables import RECORD_COLUMNS, record_rows
from reactor.rules.loader import load_rules
from reactor.settings import Settings
from reactor.sources.base import DeadLetterStore
from reactor.sources.memory import MemorySource
from reactor.sources.redis_streams import RedisStreamsSource
from reactor.supermq.client import SuperMQClient


async def open_dead_letters(settings: Settings) -> DeadLetterStore:
    """The dead-letter records of the configured event store (its dead-letter face)."""
    return await build_source(settings).open_dead_letters()


async def dlq_command(
    args: argparse.Namespace, settings: Settings, logger: structlog.typing.FilteringBoundLogger
) -> int:
    """``reactor dlq list|show|replay|purge``."""
    dead = await open_dead_letters(settings)
    try:
        return await _dlq(args, settings, dead, logger)
    finally:
        await dead.close()


async def _dlq(
    args: argparse.Namespace,
    settings: Settings,
    dead: DeadLetterStore,
    logger: structlog.typing.FilteringBoundLogger,
) -> int:
    since = parse_since(args.since) if getattr(args, "since", None) else None
    if args.dlq_command == "list":
        records = await dead.records(rule=args.rule, since_ns=since, limit=args.limit)
        if args.json:
            dump(records_document(records), sys.stdout)
        elif records and is_terminal(sys.stdout):
            table(sys.stdout, RECORD_COLUMNS, record_rows(records))
        else:
            print_records(records, sys.stdout)
        return 0
    if args.dlq_command == "show":
        found = await dead.records(ids=[args.id])
        if not found:
            print(f"no dead-letter record {args.id}", file=sys.stderr)
            return 1
        if args.json:
            dump(record_document(found[0]), sys.stdout, indent=None)
        else:
            print_record(found[0], sys.stdout)
        return 0
    if args.dlq_command == "purge":
        if not args.ids and not args.all:
            print("name the records to purge, or --all", file=sys.stderr)
            return 2
        removed = await dead.purge() if args.all else await dead.delete(args.ids)
        print(f"purged {removed} record(s) from {dead.where}")
        return 0
    return await replay_dead_letters(settings, dead, logger, ids=args.ids, rule=args.rule, since_ns=since)


async def replay_dead_letters(
    settings: Settings,
    dead: DeadLetterStore,
    logger: structlog.typing.FilteringBoundLogger,
    *,
    ids: Sequence[str] = (),
    rule: str | None = None,
    since_ns: int | None = None,
    client: SuperMQClient | None = None,
    state: StateStore | None = None,
) -> int:
    """Replay matching records; print what happened; exit 0 when all succeeded."""
    records = await dead.records(ids=ids, rule=rule, since_ns=since_ns)
    if not records:
        print("no dead-letter records match")
        return 0
    source = ReplaySource(dead, list(reversed(records)), build_sealer(settings))  # oldest first
    for why in source.masked:
        print(why)
    reactor = Reactor.build(settings, source, logger, client=client, state=state)
    await reactor.run(asyncio.Event())
    for record in source.failed_again:
        print(f"failed again: {record.stream} {record.entry_id}: {record.reason}: {record.error}")
    print(
        f"replayed {len(records)} record(s): {len(source.replayed)} succeeded and were removed, "
        f"{len(source.failed_again)} failed again"
    )
    return 0 if not source.failed_again else 1


async def ops_command(
    args: argparse.Namespace, settings: Settings, logger: structlog.typing.FilteringBoundLogger
) -> int:
    """``reactor status`` and ``reactor history``."""
    audit = build_audit(settings) if settings.ops.audit else None
    try:
        if args.command == "history":
            if audit is None:
                print("the audit trail is off (ops.audit = false)", file=sys.stderr)
                return 2
            rows = await audit.query(
                device=args.thing,
                entry_id=args.event,
                rule=args.rule,
                since_ns=parse_since(args.since) if args.since else None,
                limit=args.limit,
            )
            if args.json:
                dump(history_document(rows), sys.stdout)
            else:
                print_history(rows, sys.stdout)
            return 0
        client = (
            aioredis.Redis.from_url(settings.redis.url, decode_responses=True)
            if settings.source not in ("nats", "rabbitmq")
            else None
        )
        supermq = SuperMQClient(settings.supermq)
        try:
            status = await gather(settings, client, build_registry(settings, logger, supermq), audit)
        finally:
            if client is not None:
                await client.aclose()
            await supermq.aclose()
        print_status(status, sys.stdout, as_json=args.json)
        return 0
    finally:
        if audit is not None:
            await audit.close()


async def certs_command(
    args: argparse.Namespace, settings: Settings, logger: structlog.typing.FilteringBoundLogger
) -> int:
    """``reactor certs inspect|sweep|dev-ca``."""
    if args.certs_command == "dev-ca":
        directory = args.dir or settings.certs.local_ca_dir
        cert_path, key_path = LocalCA("supermq-reactor development CA").save(directory)
        print(
            f"development CA: {cert_path} (trust anchor) and {key_path} "
            "(private key, mode 0600: never commit it)"
        )
        return 0
    policy = policy_from(settings.certs)
    # Each certificate is read the device's way, which the platform publishes as thing.bootstrap:
    # posted to the shared loop guard so that a daemon beside this command does not act on it.
    client = SuperMQClient(settings.supermq, echoes=build_echoes(settings))
    try:
        if args.certs_command == "inspect":
            return await _inspect(args, settings, policy, client)
        rotator = Rotator(client, policy, settings.certs, settings.supermq.cert_ttl)
        summary = await sweep(
            client, policy, settings.certs, rotator, dry_run=args.dry_run, progress=progress("certs sweep")
        )
        print_summary(summary, sys.stdout, dry_run=args.dry_run)
        return 1 if summary.failed else 0
    finally:
        await client.aclose()
        await client.echoes.close()  # type: ignore[union-attr]


async def _inspect(
    args: argparse.Namespace, settings: Settings, policy: Policy, client: SuperMQClient
) -> int:
    key = read_named_file(args.key, "--key") if args.key else ""
    if args.thing is not None:
        if not args.thing.strip():
            raise ConfigError("certs inspect --thing: give the thing id of a bootstrap config")
        config = await client.served_config(args.thing)
        identity = device_identity(settings.certs.bind, config)
        verdict = validate(config.client_cert, policy, key_pem=key, ca_pem=config.ca_cert, identity=identity)
    else:
        verdict = validate(read_named_file(args.file, "certs inspect"), policy, key_pem=key)
    if args.json:
        dump(verdict_document(verdict), sys.stdout)
        return 0 if verdict.verdict == "ok" else 1
    print(f"verdict: {verdict.verdict.upper()}")
    for name in (
        "subject",
        "issuer",
        "serial",
        "not_before",
        "not_after",
        "days_left",
        "key_type",
        "key_size",
    ):
        print(f"  {name:<11} {getattr(verdict, name)}")
    if verdict.chain:
        print("  chain       " + "  <-  ".join(verdict.chain))
    for reason in verdict.reasons:
        print(f"  - {reason}")
    return 0 if verdict.verdict == "ok" else 1


async def replay_command(
    args: argparse.Namespace, settings: Settings, logger: structlog.typing.FilteringBoundLogger
) -> int:
    """``reactor replay FILE | --stream S --from A --to B [--apply]``."""
    if args.file is not None:
        deliveries = deliveries_from_file(args.file, args.stream or "supermq.bootstrap")
    elif not args.stream:
        raise ConfigError("replay: name a FILE or a --stream")
    else:
        client = aioredis.Redis.from_url(settings.redis.url, decode_responses=True)
        try:
            deliveries = await deliveries_from_stream(client, args.stream, args.start, args.end)
        finally:
            await client.aclose()
    supermq = SuperMQClient(settings.supermq)
    if not args.apply:
        rules = load_rules(settings.rules.dir, build_registry(settings, logger, supermq))
        summary = dry_run_all(deliveries, rules, Decoder.from_settings(settings.events), progress("replay"))
        await supermq.aclose()
        print_replay(summary, sys.stdout, applied=False)
        return 0
    source = MemorySource()
    for delivery in deliveries:
        source.add_delivery(delivery)
    reactor = Reactor.build(
        settings, source, logger, client=supermq, observers=[_progress_observer(len(deliveries))]
    )
    await reactor.run(asyncio.Event())
    summary = ReplaySummary(
        events=len(deliveries),
        acted=reactor.worker.counters.events - len(source.dead_letters),
        dead_lettered=len(source.dead_letters),
    )
    summary.errors = [f"{d.stream} {d.entry_id}: {d.reason}: {d.error}" for d in source.dead_letters]
    print_replay(summary, sys.stdout, applied=True)
    return 0 if not source.dead_letters else 1


def _progress_observer(total: int) -> Any:
    show = progress("replay --apply")
    done = 0

    def observe(_: Any) -> None:
        nonlocal done
        done += 1
        show(done, total)

    return observe


async def backfill_command(
    args: argparse.Namespace, settings: Settings, logger: structlog.typing.FilteringBoundLogger
) -> int:
    """``reactor backfill --group G``: a new group from the start of the streams, until caught up."""
    redis_settings = settings.redis.model_copy(update={"group": args.group, "start_id": "0"})
    settings = settings.model_copy(update={"redis": redis_settings})
    client = aioredis.Redis.from_url(settings.redis.url, decode_responses=True)
    reactor = Reactor.build(settings, RedisStreamsSource(redis_settings), logger)
    try:
        await _run_until_caught_up(reactor, client, args.group)
    finally:
        await client.aclose()
    c = reactor.worker.counters
    print(
        f"backfill {args.group}: {c.events} event(s), {c.matched} rule match(es), "
        f"{c.actions_ok} action(s) ok, {c.actions_failed} failed, {c.dead_lettered} dead-lettered"
    )
    return 0


async def _run_until_caught_up(reactor: Reactor, client: aioredis.Redis, group: str) -> None:
    """Run the reactor until its group has caught up (or the run ends: its failure is raised)."""
    stop = asyncio.Event()
    run = asyncio.create_task(reactor.run(stop))
    waiting = asyncio.create_task(
        wait_caught_up(client, reactor.settings.redis.streams, group, stop, progress(f"backfill {group}"))
    )
    await asyncio.wait({run, waiting}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    waiting.cancel()
    await asyncio.wait({waiting})
    await run
    if not waiting.cancelled():
        waiting.result()  # the event store failed while we watched the group


async def simulate_command(args: argparse.Namespace) -> int:
    """``reactor simulate-supermq``: SuperMQ's APIs on loopback until SIGINT/SIGTERM."""
    from reactor.supermq.simulator import DEFAULT_PORTS, Simulator  # noqa: PLC0415 - an optional extra
    from reactor.supermq.simulator.contract import services_of  # noqa: PLC0415
    from reactor.supermq.simulator.seed import seed  # noqa: PLC0415

    ports = {
        service: args.port_base + offset if args.port_base else DEFAULT_PORTS[service]
        for offset, service in enumerate(services_of(args.profile))
    }
    sim = Simulator(host=args.host, ports=ports, validate=not args.no_validate, profile=args.profile)
    await sim.start()
    if args.seed:
        seed(sim.state)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    era = {"things": "Magistrala v0.14", "mainflux": "Mainflux 2023", "clients": "SuperMQ HEAD"}[args.profile]
    print(f"SuperMQ simulator ({era} APIs) listening:")
    for service in sim.services:
        print(f"  {service:<10} {sim.url(service)}")
    if args.profile == "clients":
        print(f"  domain_id  {sim.state.domain_id}")
    print(
        f"log in with identity {sim.state.identity!r} and the simulator's trial secret (see --help);"
        " Ctrl-C stops"
    )
    await stop.wait()
    await sim.stop()
    if sim.contract is not None and sim.contract.violations:
        print(f"{len(sim.contract.violations)} request(s) broke the OpenAPI contract", file=sys.stderr)
        return 1
    return 0
