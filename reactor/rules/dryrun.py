"""The dry run: which rules an event matches, why the others do not, and the exact actions that
would run with their rendered parameters (secrets masked). No action runs; nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TextIO

from reactor.events.model import Event
from reactor.redact import MASK, redact
from reactor.rules.model import CompiledAction
from reactor.rules.ruleset import RuleSet


@dataclass(frozen=True)
class PlannedAction:
    id: str
    type: str
    params: dict[str, Any]


@dataclass(frozen=True)
class RuleReport:
    rule: str
    matched: bool
    reason: str | None
    actions: list[PlannedAction] = field(default_factory=list)


def _plan(action: CompiledAction, ctx: dict[str, Any]) -> PlannedAction:
    params = action.rendered_preview(ctx)
    for name in action.impl.secret_params:
        if name in params:
            params[name] = MASK
    event = ctx.get("event")
    secrets = event.secrets if isinstance(event, Event) else frozenset()
    return PlannedAction(action.id, action.type, redact(params, secrets=secrets))


def dry_run(rules: RuleSet, event: Event) -> list[RuleReport]:
    """A report for every rule, in load order."""
    ctx: dict[str, Any] = {"event": event, "results": {}}
    reports = []
    for why in rules.explain(event, ctx):
        matched = why.candidate and why.reason is None
        planned = [_plan(a, ctx) for a in why.rule.actions] if matched else []
        reports.append(RuleReport(why.rule.name, matched, why.reason, planned))
    return reports


def print_report(event: Event, reports: list[RuleReport], out: TextIO) -> None:
    """The dry run, readable."""
    alias = f" (published as {event.raw_operation})" if event.raw_operation != event.operation else ""
    print(
        f"event {event.stream} {event.entry_id}: {event.operation}{alias} device={event.device or '-'}",
        file=out,
    )
    for report in reports:
        if report.matched:
            print(f"  MATCH {report.rule}", file=out)
            for action in report.actions:
                print(f"    would run {action.id} ({action.type}): {action.params}", file=out)
        else:
            print(f"  miss  {report.rule}: {report.reason}", file=out)
    matched = sum(r.matched for r in reports)
    print(f"  {matched} of {len(reports)} rule(s) match", file=out)
