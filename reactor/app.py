"""Wiring: Settings → source, decoder, rules, actions, executor, worker; signals; the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import redis.asyncio as aioredis
import structlog
from prometheus_client import Gauge

from reactor.actions.base import ActionRegistry
from reactor.actions.bootstrap import bootstrap_actions
from reactor.actions.certs import certs_actions
from reactor.actions.certs_lifecycle import RotateCert, ValidateCert
from reactor.actions.http import HttpRequest
from reactor.actions.log import LogAction, NoopAction
from reactor.actions.messages import Publish
from reactor.actions.provision import provision_actions
from reactor.actions.things import things_actions
from reactor.backoff import Backoff, StoppedError, until_stopped
from reactor.certs.policy import policy_from
from reactor.certs.rotation import Rotator
from reactor.certs.sweep import sweep
from reactor.delivery.echo_board import SHARED, RedisEchoBoard
from reactor.delivery.executor import Executor
from reactor.delivery.gates import Gates, MemoryGates, RedisGates
from reactor.delivery.outcome import Outcome
from reactor.delivery.retry import RetryPolicy
from reactor.delivery.settler import Observer
from reactor.delivery.state import MemoryStateStore, RedisStateStore, SQLiteStateStore, StateStore
from reactor.delivery.worker import Worker
from reactor.errors import ActionError, ConfigError, SourceError, StateStoreError
from reactor.events.decode import Decoder
from reactor.events.echoes import Echoes
from reactor.ops.audit import AuditStore, MemoryAudit, RedisAudit, SQLiteAudit, keep_pruned
from reactor.ops.logging import EventLines
from reactor.ops.metrics import Metrics
from reactor.ops.server import OpsServer
from reactor.provision.commands import build_provisioner
from reactor.rules.reload import RuleHolder
from reactor.rules.ruleset import RuleSet
from reactor.secrets import Sealer
from reactor.settings import Settings, deprecated_keys
from reactor.signals import early_stop_signal
from reactor.sources.base import Source
from reactor.sources.memory import MemorySource
from reactor.sources.nats_jetstream import NatsJetStreamSource
from reactor.sources.rabbitmq import RabbitMQSource
from reactor.sources.redis_streams import RedisStreamsSource
from reactor.supermq.client import SuperMQClient
from reactor.supervise import Supervisor, TaskFailedError, describe


def build_registry(
    settings: Settings,
    logger: structlog.typing.FilteringBoundLogger,
    client: SuperMQClient,
    metrics: Metrics | None = None,
) -> ActionRegistry:
    """Every action type rules may use. Building it reads the trust anchors; no network I/O."""
    policy = policy_from(settings.certs)
    on_verdict = metrics.record_verdict if metrics is not None else None
    return ActionRegistry(
        [
            LogAction(logger),
            NoopAction(),
            *bootstrap_actions(client),
            *things_actions(client),
            *provision_actions(client, build_provisioner(settings, client)),
            *certs_actions(client, settings.supermq.cert_ttl),
            Publish(client),
            HttpRequest(lambda: client.external_http, settings.supermq.http_allowlist),
            ValidateCert(policy, on_verdict),
            RotateCert(client, policy, settings.certs, settings.supermq.cert_ttl, on_verdict),
        ]
    )


#: The collector's young-generation threshold for the daemon (CPython's default: 700). At 64
#: HTTP actions in flight a batch's live objects crossed 700 every ~17 events, and those passes
#: found nothing to collect (the per-event objects die by reference count): ~10% of an action's
#: CPU (bench/README.md, Profiling history). At 10,000 a pass runs every few hundred events,
#: each ~1-3 ms; the older generations' thresholds stay CPython's, so they run as often per pass.
GC_YOUNG_THRESHOLD = 10_000


def tune_collector() -> None:
    """Raise the young generation's threshold to ``GC_YOUNG_THRESHOLD`` (never lower one set
    higher by whoever embeds the reactor)."""
    young, middle, old = gc.get_threshold()
    if young and young < GC_YOUNG_THRESHOLD:  # 0: the collector was switched off, left so
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def build_echoes(settings: Settings) -> Echoes:
    """The loop guard; its shared operations also go through the Redis of a Redis-fed reactor,
    so a sweep or another process's device reads are known to every daemon there."""
    if settings.source != "redis":
        return Echoes()
    board = RedisEchoBoard(aioredis.Redis.from_url(settings.redis.url))
    return Echoes(board=board, shared=SHARED)


def build_sealer(settings: Settings) -> Sealer:
    """The key that seals kept secrets (``[secrets]``); ``ConfigError`` naming the setting when
    it is not a Fernet key. Ephemeral (``Sealer.ephemeral``) when none is configured."""
    try:
        key_file = Path(settings.secrets.key_file) if settings.secrets.key_file else None
        return Sealer.from_config(settings.secrets.key.get_secret_value(), key_file)
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from None


def build_state_store(settings: Settings, sealer: Sealer | None = None) -> StateStore:
    """The configured state store of completed steps (secrets in results sealed by ``sealer``)."""
    if settings.state.backend == "memory" or settings.source == "memory":
        return MemoryStateStore()
    if settings.state.backend == "redis":
        client = aioredis.Redis.from_url(settings.redis.url, decode_responses=True)
        return RedisStateStore(
            client, settings.state.retention_s, prefix=f"reactor:{settings.redis.group}:steps", sealer=sealer
        )
    state = settings.state
    return SQLiteStateStore(state.path, state.retention_s, sealer, state.commit_interval_ms / 1000)


def build_gates(settings: Settings) -> Gates:
    """Rule throttles and debounces: in Redis beside a Redis state store (they hold across
    processes), else in memory."""
    if settings.state.backend == "redis" and settings.source != "memory":
        client = aioredis.Redis.from_url(settings.redis.url, decode_responses=True)
        return RedisGates(client, prefix=f"reactor:{settings.redis.group}:gates")
    return MemoryGates(settings.state.gates_capacity)


def build_audit(settings: Settings) -> AuditStore:
    """The audit trail, in the state store's backend."""
    ops = settings.ops
    if settings.state.backend == "memory" or settings.source == "memory":
        return MemoryAudit(retention_s=ops.audit_retention_s)
    if settings.state.backend == "redis":
        client = aioredis.Redis.from_url(settings.redis.url, decode_responses=True)
        stream = f"reactor:{settings.redis.group}:audit"
        return RedisAudit(client, stream, maxlen=ops.audit_max_rows, retention_s=ops.audit_retention_s)
    return SQLiteAudit(settings.state.path, retention_s=ops.audit_retention_s, max_rows=ops.audit_max_rows)


def build_source(settings: Settings) -> Source:
    """The configured event source."""
    if settings.source == "memory":
        return MemorySource(finite=False)
    if settings.source == "nats":
        return NatsJetStreamSource(settings.nats)
    if settings.source == "rabbitmq":
        return RabbitMQSource(settings.rabbitmq)
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
    metrics: Metrics
    audit: AuditStore | None
    sealer: Sealer | None = None
    gates: Gates | None = None

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
        *,
        pause_on_login_failure: bool = False,
    ) -> Reactor:
        """``pause_on_login_failure`` (the daemon): a failed SuperMQ login pauses consuming
        until a probe login succeeds, instead of failing the events in hand."""
        tune_collector()
        client = client or SuperMQClient(settings.supermq)
        if client.echoes is None:
            client.echoes = build_echoes(settings)
        client.auth.armed = pause_on_login_failure
        metrics = Metrics()
        paused = Gauge(
            "reactor_supermq_login_paused",
            "1 while consuming is paused: SuperMQ does not take the reactor's login",
            registry=metrics.registry,
        )
        paused.set_function(lambda: 1.0 if client.auth.open else 0.0)
        registry = build_registry(settings, logger, client, metrics)
        holder = RuleHolder(settings.rules.dir, registry, logger, bounds_from=settings.rules)
        sealer = build_sealer(settings)
        state = state if state is not None else build_state_store(settings, sealer)
        executor = Executor(
            holder.current,
            RetryPolicy.from_settings(settings.retry),
            state,
            client.echoes,
            gates := build_gates(settings),
        )
        audit = build_audit(settings) if settings.ops.audit else None
        worker = Worker(
            source,
            Decoder.from_settings(settings.events),
            executor,
            settings.worker,
            batch_size=settings.worker.batch_size,
            block_ms=settings.worker.block_ms,
            logger=logger,
            observers=[log_outcome(logger), metrics.observe, *observers],
            sinks=[audit.record] if audit is not None else [],
            pause=client.auth,
            sealer=sealer,
        )
        return cls(settings, source, holder, worker, client, state, metrics, audit, sealer, gates)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` (or a finite source's end), reloading rules on change.

        ``TaskFailedError`` when a task of the worker died of an unexpected exception (logged as
        ``reactor.task_failed``); the rules watcher is restarted instead."""
        self.state.stop = stop  # the state store's own retries give up on it too
        if not await self._start_source(stop):
            return
        await self._log_profile()
        watcher_stop = asyncio.Event()
        watcher = Supervisor(watcher_stop, self.worker.logger)
        interval = self.settings.rules.reload_interval_s
        if interval > 0:
            watcher.spawn("rules-watcher", lambda: self.holder.watch(watcher_stop, interval), restart=True)
        audit = self.audit
        if audit is not None:  # off the per-event path: a task of its own
            watcher.spawn(
                "audit-pruner", lambda: keep_pruned(audit, watcher_stop, self.worker.logger), restart=True
            )
        try:
            await self.worker.run(stop)
        finally:
            watcher_stop.set()
            await watcher.join()
            await self.source.close()
            await self.client.aclose()
            if self.client.echoes is not None:
                await self.client.echoes.close()
            await self._close_stores()

    async def _close_stores(self) -> None:
        """The state store's last commit, then the audit trail and the gates, closed whatever it
        did: a failed commit is one line (its records run again on redelivery, as after a crash)."""
        try:
            await self.state.close()
        except StateStoreError as exc:
            await self.worker.logger.aerror("state.commit_failed", error=str(exc), at="close")
        finally:
            try:
                if self.audit is not None:
                    await self.audit.close()
            finally:
                if self.gates is not None:
                    await self.gates.close()

    async def _log_profile(self) -> None:
        """Say which API profile is in use (``auto``: what /health showed; asked again later if
        the platform does not answer yet)."""
        logger = self.worker.logger
        try:
            profile = await self.client.resolve_profile()
        except ActionError as exc:
            await logger.awarning("supermq.profile_pending", reason=str(exc))
            return
        await logger.ainfo("supermq.profile", profile=profile.name, reason=self.client.profile_reason)

    async def ready(self) -> dict[str, bool]:
        """What /readyz reports: the event store answers, a rule set is in force, and no processed
        event has waited longer than ``worker.max_unsettled_s`` to be settled (acked); in the
        daemon, consuming is not paused for SuperMQ's login."""
        checks = {
            "source": await self.source.ready(),
            "rules": self.holder.loaded,
            "settling": self.worker.unsettled_s() <= self.settings.worker.max_unsettled_s,
        }
        if self.client.auth.armed:  # the daemon: consuming pauses while SuperMQ refuses the login
            checks["supermq_login"] = not self.client.auth.open
        return checks

    async def watch_backlog(self, stop: asyncio.Event) -> None:
        """Keep the lag, pending, dead-letter, rules and readiness gauges current, until ``stop``."""
        m = self.metrics
        while not stop.is_set():
            m.rules_loaded.set(len(self.rules))
            m.rules_reload_ok.set(0 if self.holder.last_error else 1)
            m.unsettled_s.set(self.worker.unsettled_s())
            m.ready.set(1 if all((await self.ready()).values()) else 0)
            with contextlib.suppress(SourceError):
                status = await self.source.status()
                for row in status.streams:
                    if row.exists:
                        m.set_backlog(row.group, [(row.stream, row.lag, row.pending)])
                m.dlq_length.set(status.dead_letters)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.ops.backlog_interval_s)

    async def _start_source(self, stop: asyncio.Event) -> bool:
        """Connect to the event store, waiting out an outage (with backoff) until ``stop``; a
        connection attempt in progress is given up on ``stop`` too."""
        logger = self.worker.logger

        async def failed(exc: BaseException, retry_in_s: float) -> None:
            await logger.awarning("source.start_failed", error=str(exc), retry_in_s=retry_in_s)

        recoverable: tuple[type[Exception], ...] = (SourceError, *self.source.recoverable)
        try:
            await Backoff(stop).retry(lambda: until_stopped(self.source.start(), stop), recoverable, failed)
        except StoppedError:
            return False
        return True


def log_outcome(logger: structlog.typing.FilteringBoundLogger) -> OutcomeLog:
    """One structured line per settled event."""
    return OutcomeLog(logger)


class OutcomeLog:
    """The settled event's line: ``event.dead_lettered`` (WARNING, at once) or ``event.acted``
    (INFO; its fields built only when INFO is logged, the lines of a batch written by ``flush``)."""

    def __init__(self, logger: structlog.typing.FilteringBoundLogger) -> None:
        self._logger = logger
        self._acted = EventLines(logger)

    def __call__(self, outcome: Outcome) -> None:
        if outcome.dead_letter is not None:
            d, dl = outcome.delivery, outcome.dead_letter
            self._logger.warning(
                "event.dead_lettered",
                stream=d.stream,
                entry_id=d.entry_id,
                reason=dl.reason,
                error=dl.error,
                rule=dl.rule or None,
                action=dl.action or None,
            )
            return
        if self._acted.enabled and outcome.rules and outcome.event is not None:
            fields = outcome.event.summary()
            fields["rules"] = [r.rule for r in outcome.rules]
            self._acted.info("event.acted", fields)

    def flush(self) -> None:
        self._acted.flush()


def install_signal_handlers(stop: asyncio.Event, holder: RuleHolder) -> None:
    """SIGINT/SIGTERM set ``stop`` (finish the batch in hand, settle it, exit); SIGHUP reloads rules.

    A SIGINT/SIGTERM that came while the process was still starting (see ``reactor.signals``)
    sets ``stop`` at once."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if early_stop_signal() is not None:
        stop.set()
    loop.add_signal_handler(signal.SIGHUP, holder.request_reload)  # compiled off the loop


async def run_daemon(settings: Settings, logger: structlog.typing.FilteringBoundLogger) -> int:
    """``reactor run``: consume until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    reactor = Reactor.build(settings, build_source(settings), logger, pause_on_login_failure=True)
    install_signal_handlers(stop, reactor.holder)
    ops = None
    if settings.ops.listen:
        host, port = settings.ops.listen.rsplit(":", 1)
        ops = OpsServer(reactor.metrics, reactor.ready, host, int(port))
        try:
            await ops.start()
        except OSError as exc:
            raise ConfigError(f"ops.listen {settings.ops.listen}: {exc.strerror or exc}") from exc
    tasks = Supervisor(stop, logger)
    tasks.spawn("gauges", lambda: reactor.watch_backlog(stop), restart=True)
    tasks.spawn("sweeps", lambda: scheduled_sweeps(reactor, stop, logger), restart=True)
    await logger.ainfo(
        "reactor.started",
        source=settings.source,
        streams=settings.redis.streams,
        group=settings.redis.group,
        consumer=settings.redis.consumer,
        rules=len(reactor.rules),
    )
    for line in deprecated_keys(settings):
        await logger.awarning("settings.deprecated", detail=line)
    if reactor.sealer is not None and reactor.sealer.ephemeral:
        await logger.awarning(
            "secrets.ephemeral_key",
            detail="no secrets.key nor secrets.key_file: dead-letter originals and secrets in step "
            "results are sealed under a key of this process alone (after a restart, and for "
            "reactor dlq replay, they replay masked)",
        )
    try:
        failure = await _run_supervised(reactor, stop, tasks)
    finally:
        if ops is not None:
            await ops.stop()
    counters = asdict(reactor.worker.counters)
    if failure is not None:
        await logger.aerror(
            "reactor.stopped", failed_task=failure.task, error=describe(failure.error), **counters
        )
        return 1
    await logger.ainfo("reactor.stopped", **counters)
    return 0


async def _run_supervised(reactor: Reactor, stop: asyncio.Event, tasks: Supervisor) -> TaskFailedError | None:
    """Run until ``stop``; the failure that stopped the daemon, if one did."""
    try:
        await reactor.run(stop)
    except TaskFailedError as exc:
        return exc
    except ConfigError:
        raise  # the operator's to fix (a platform of an era the reactor does not speak): one line
    except Exception as exc:  # outside the worker's tasks: the wiring itself
        tasks.fail("reactor", exc)
        return tasks.failure
    finally:
        stop.set()
        await tasks.join()
    return None


async def scheduled_sweeps(
    reactor: Reactor, stop: asyncio.Event, logger: structlog.typing.FilteringBoundLogger
) -> None:
    """Every ``certs.sweep_interval_s`` (when set): check every config's certificate, rotate what is due."""
    interval = reactor.settings.certs.sweep_interval_s
    if interval <= 0:
        return
    policy = policy_from(reactor.settings.certs)
    on_verdict = reactor.metrics.record_verdict
    rotator = Rotator(
        reactor.client, policy, reactor.settings.certs, reactor.settings.supermq.cert_ttl, on_verdict
    )
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        if stop.is_set():
            return
        try:
            summary = await sweep(
                reactor.client,
                policy,
                reactor.settings.certs,
                rotator,
                dry_run=False,
                on_verdict=on_verdict,
            )
        except ActionError as exc:
            await logger.awarning("certs.sweep_failed", error=str(exc))
            continue
        await logger.ainfo(
            "certs.sweep_done", **{k: v for k, v in asdict(summary).items() if k != "failures"}
        )
