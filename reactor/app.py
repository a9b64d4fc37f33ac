"""Wiring: Settings → source, decoder, rules, actions, executor, worker; signals; the daemon."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from reactor.actions.base import ActionRegistry
from reactor.actions.bootstrap import bootstrap_actions
from reactor.actions.certs import certs_actions
from reactor.actions.http import HttpRequest
from reactor.actions.log import LogAction, NoopAction
from reactor.actions.messages import Publish
from reactor.actions.things import things_actions
from reactor.delivery.executor import Executor
from reactor.delivery.retry import RetryPolicy
from reactor.delivery.state import MemoryStateStore, RedisStateStore, SQLiteStateStore, StateStore
from reactor.delivery.worker import Observer, Outcome, Worker
from reactor.events.decode import Decoder
from reactor.ops.redact import redact
from reactor.rules.reload import RuleHolder
from reactor.rules.ruleset import RuleSet
from reactor.settings import Settings
from reactor.sources.base import Source
from reactor.sources.memory import MemorySource
from reactor.sources.redis_streams import RedisStreamsSource
from reactor.supermq.client import SuperMQClient


def build_registry(
    settings: Settings, logger: structlog.typing.FilteringBoundLogger, client: SuperMQClient
) -> ActionRegistry:
    """Every action type rules may use. Building it does no I/O (rules check and dry runs use it)."""
    return ActionRegistry(
        [
            LogAction(logger),
            NoopAction(),
            *bootstrap_actions(client),
            *things_actions(client),
            *certs_actions(client, settings.supermq.cert_ttl),
            Publish(client),
            HttpRequest(client.http, settings.supermq.http_allowlist),
        ]
    )


def build_state_store(settings: Settings) -> StateStore:
    """The configured state store of completed steps."""
    if settings.state.backend == "memory" or settings.source == "memory":
        return MemoryStateStore()
    if settings.state.backend == "redis":
        client = aioredis.Redis.from_url(settings.redis.url, decode_responses=True)
        return RedisStateStore(
            client, settings.state.retention_s, prefix=f"reactor:{settings.redis.group}:steps"
        )
    return SQLiteStateStore(settings.state.path, settings.state.retention_s)


def build_source(settings: Settings) -> Source:
    """The configured event source."""
    if settings.source == "memory":
        return MemorySource(finite=False)
    return RedisStreamsSource(settings.redis)


@dataclass
class Reactor:
    """A ready-to-run reactor: the worker and what it is built from."""

    settings: Settings
    source: Source
    holder: RuleHolder
    worker: Worker
    client: SuperMQClient
    state: StateStore

    @property
    def rules(self) -> RuleSet:
        return self.holder.current()

    @classmethod
    def build(
        cls,
        settings: Settings,
        source: Source,
        logger: structlog.typing.FilteringBoundLogger,
        observers: Sequence[Observer] = (),
        client: SuperMQClient | None = None,
        state: StateStore | None = None,
    ) -> Reactor:
        client = client or SuperMQClient(settings.supermq)
        registry = build_registry(settings, logger, client)
        holder = RuleHolder(settings.rules.dir, registry, logger)
        state = state if state is not None else build_state_store(settings)
        executor = Executor(holder.current, RetryPolicy.from_settings(settings.retry), state)
        worker = Worker(
            source,
            Decoder(settings.events.families),
            executor,
            settings.worker,
            batch_size=settings.redis.batch_size,
            block_ms=settings.redis.block_ms,
            logger=logger,
            observers=[log_outcome(logger), *observers],
        )
        return cls(settings, source, holder, worker, client, state)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` (or a finite source's end), reloading rules on change."""
        await self.source.start()
        watcher_stop = asyncio.Event()
        interval = self.settings.rules.reload_interval_s
        watcher = asyncio.create_task(self.holder.watch(watcher_stop, interval)) if interval > 0 else None
        try:
            await self.worker.run(stop)
        finally:
            watcher_stop.set()
            if watcher is not None:
                await watcher
            await self.source.close()
            await self.client.aclose()
            await self.state.close()


def log_outcome(logger: structlog.typing.FilteringBoundLogger) -> Observer:
    """One structured line per settled event."""

    def observe(outcome: Outcome) -> None:
        d = outcome.delivery
        if outcome.dead_letter is not None:
            dl = outcome.dead_letter
            logger.warning(
                "event.dead_lettered",
                stream=d.stream,
                entry_id=d.entry_id,
                reason=dl.reason,
                error=dl.error,
                rule=dl.rule or None,
                action=dl.action or None,
            )
            return
        if outcome.rules and outcome.event is not None:
            logger.info("event.acted", **outcome.event.summary(), rules=[r.rule for r in outcome.rules])

    return observe


def install_signal_handlers(stop: asyncio.Event, holder: RuleHolder) -> None:
    """SIGINT/SIGTERM set ``stop`` (finish the batch in hand, settle it, exit); SIGHUP reloads rules."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, holder.reload)


async def run_daemon(settings: Settings, logger: structlog.typing.FilteringBoundLogger) -> int:
    """``reactor run``: consume until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    reactor = Reactor.build(settings, build_source(settings), logger)
    install_signal_handlers(stop, reactor.holder)
    await logger.ainfo(
        "reactor.started",
        source=settings.source,
        streams=settings.redis.streams,
        group=settings.redis.group,
        consumer=settings.redis.consumer,
        rules=len(reactor.rules),
    )
    await reactor.run(stop)
    await logger.ainfo("reactor.stopped", **redact(vars(reactor.worker.counters)))
    return 0
