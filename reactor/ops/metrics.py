"""Prometheus metrics, on a registry of the reactor's own (no process-global state).

Labels are bounded by configuration, never by input: an operation outside the catalogue is
``other``; streams (configured on Redis, subjects or routing keys on NATS and RabbitMQ) are the
first ``MAX_STREAM_LABELS`` seen, the rest ``other``; rule and action names come from the rules,
reasons, types and outcomes are fixed words. Never device ids, entry ids or parameter values (no
secrets, no cardinality blow-up). An HTTP error from SuperMQ is a failed action, never a success.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from reactor.certs.validate import Verdict
from reactor.delivery.outcome import Outcome
from reactor.events.catalogue import CANONICAL_OPERATIONS
from reactor.redact import utf8_safe

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_DAY_BUCKETS = (0, 1, 3, 7, 14, 30, 60, 90, 180, 365, 730)
#: Distinct stream label values kept; later streams are counted as ``other``.
MAX_STREAM_LABELS = 64
OTHER = "other"


class BoundedLabel:
    """The values of one label: ``known`` ones as they are, up to ``limit`` others as first seen,
    then ``other``."""

    def __init__(self, limit: int, known: frozenset[str] = frozenset()) -> None:
        self._known = known
        self._seen: set[str] = set()
        self._limit = limit

    def __call__(self, value: str) -> str:
        if value in self._known or value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        value = utf8_safe(value)  # the exposition is UTF-8: no lone surrogates
        self._seen.add(value)
        return value


class Metrics:
    """Every metric the reactor exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._operation = BoundedLabel(0, CANONICAL_OPERATIONS)
        self._stream = BoundedLabel(MAX_STREAM_LABELS)
        r = self.registry
        self.events = Counter(
            "reactor_events_total",
            "Events settled, by stream and canonical operation",
            ["stream", "operation"],
            registry=r,
        )
        self.malformed = Counter(
            "reactor_events_malformed_total", "Entries that could not be decoded", ["stream"], registry=r
        )
        self.rule_matched = Counter(
            "reactor_rule_matched_total", "Events whose conditions held, per rule", ["rule"], registry=r
        )
        self.rule_failed = Counter(
            "reactor_rule_failed_total", "Rule runs with an action that failed for good", ["rule"], registry=r
        )
        self.actions = Counter(
            "reactor_actions_total",
            "Actions run, by outcome (success, failed, skipped)",
            ["rule", "action", "type", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "reactor_action_retries_total",
            "Attempts beyond the first",
            ["rule", "action", "type"],
            registry=r,
        )
        self.action_seconds = Histogram(
            "reactor_action_duration_seconds",
            "Action duration, retries included",
            ["type"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.dead_letters = Counter(
            "reactor_dead_letters_total", "Events sent to the dead-letter stream", ["reason"], registry=r
        )
        self.latency = Histogram(
            "reactor_event_latency_seconds",
            "From the event's occurred_at to its settlement",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "reactor_consumer_lag", "Entries not yet delivered to the group", ["stream", "group"], registry=r
        )
        self.pending = Gauge(
            "reactor_consumer_pending", "Entries delivered but not acked", ["stream", "group"], registry=r
        )
        self.dlq_length = Gauge(
            "reactor_dead_letter_stream_length", "Records in the dead-letter stream", registry=r
        )
        self.unsettled_s = Gauge(
            "reactor_unsettled_oldest_seconds",
            "How long the oldest processed event has waited to be settled (acked)",
            registry=r,
        )
        self.rules_loaded = Gauge("reactor_rules_loaded", "Rules in force", registry=r)
        self.ready = Gauge(
            "reactor_ready", "1 when /readyz answers 200 (as of the last backlog check)", registry=r
        )
        self.rules_reload_ok = Gauge(
            "reactor_rules_last_reload_success", "1 when the last reload was accepted", registry=r
        )
        self.cert_verdicts = Counter(
            "reactor_cert_verdicts_total", "Certificate checks, by verdict", ["verdict"], registry=r
        )
        self.cert_days = Histogram(
            "reactor_cert_days_to_expiry",
            "Days to expiry of the certificates seen",
            buckets=_DAY_BUCKETS,
            registry=r,
        )
        #: The children ``observe`` counts into, by metric and label values: ``labels()`` takes a
        #: lock and checks every value on each call. As bounded as the registry's own children.
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def _child(self, metric: Counter | Histogram, *values: str) -> Any:
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def record_verdict(self, verdict: Verdict) -> None:
        """A certificate check's verdict (what ``certs.*`` actions and the sweep report to)."""
        self.cert_verdicts.labels(verdict.verdict).inc()
        if verdict.days_left is not None:
            self.cert_days.observe(max(verdict.days_left, 0))

    def observe(self, outcome: Outcome) -> None:
        """Count one settled event (an observer of the worker)."""
        event = outcome.event
        child = self._child
        stream = self._stream(outcome.delivery.stream)
        if event is None:
            child(self.malformed, stream).inc()
        else:
            child(self.events, stream, self._operation(event.operation)).inc()
            self.latency.observe(max(time.time_ns() - event.occurred_at_ns, 0) / 1e9)
        for rule in outcome.rules:
            child(self.rule_matched, rule.rule).inc()
            if rule.failed is not None:
                child(self.rule_failed, rule.rule).inc()
            for step in rule.steps:
                result = "skipped" if step.skipped else "success" if step.ok else "failed"
                child(self.actions, rule.rule, step.action_id, step.type, result).inc()
                if step.attempts > 1:
                    child(self.retries, rule.rule, step.action_id, step.type).inc(step.attempts - 1)
                if not step.skipped:
                    child(self.action_seconds, step.type).observe(step.duration_s)
        if outcome.dead_letter is not None:
            child(self.dead_letters, outcome.dead_letter.reason).inc()

    def set_backlog(self, group: str, rows: Iterable[tuple[str, int | None, int]]) -> None:
        """Per stream: (stream, lag or None when Redis cannot tell, pending)."""
        for name, lag, pending in rows:
            stream = self._stream(name)
            if lag is not None:
                self.lag.labels(stream, group).set(lag)
            self.pending.labels(stream, group).set(pending)

    def render(self) -> bytes:
        return generate_latest(self.registry)
