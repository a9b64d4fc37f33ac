"""Running the matched rules of one event: ordered actions, retries, ``on_failure``, the outcome.

Side effects happen only inside actions. The outcome says, per rule, what each action did; a
rule whose action failed for good yields the dead-letter record of the event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reactor.actions.base import ActionContext
from reactor.delivery.gates import Gates, MemoryGates
from reactor.delivery.retry import RetryPolicy
from reactor.delivery.state import StateStore, Steps, step_key
from reactor.errors import ActionError, AmbiguousError, PermanentError, SuspendedError
from reactor.events.echoes import Echoes
from reactor.events.model import Event
from reactor.redact import is_secret_key, redact_text
from reactor.rules import bounds
from reactor.rules.model import CompiledAction, Gate, RetrySpec, Rule
from reactor.rules.ruleset import RuleSet
from reactor.secrets import Sealer, revealed_values, wrap_named
from reactor.sources.base import DeadLetter, delivery_key

_MISSING = object()
#: The state store's mark of an entry run alone past ``max_deliveries`` (a rule name no rule has).
_TRIAL_RULE, _TRIAL_STEP = "#trial", "alone"


async def trial_begun(state: StateStore, event_key: str) -> bool:
    """Whether this entry was already run alone once (``begin_trial``) and never settled."""
    mark = (await state.completed(event_key)).get(step_key(_TRIAL_RULE, _TRIAL_STEP))
    return isinstance(mark, dict) and not mark.get("settled")


async def begin_trial(state: StateStore, event_key: str) -> None:
    """Mark that this entry now runs alone: if the process dies before it settles, it killed it
    (durable before it runs: the mark is what its death leaves)."""
    await state.record(event_key, _TRIAL_RULE, _TRIAL_STEP, {"at": time.time()})
    await state.flush()


async def end_trial(state: StateStore, event_key: str) -> None:
    """The entry that ran alone was settled: it did not kill the process."""
    await state.record(event_key, _TRIAL_RULE, _TRIAL_STEP, {"settled": True})
    await state.flush()


@dataclass(slots=True)
class StepOutcome:
    """What one action did (``skipped``: it had completed on an earlier delivery)."""

    action_id: str
    type: str
    ok: bool
    attempts: int
    duration_s: float
    result: Any = None
    error: str | None = None
    status: int | None = None
    skipped: bool = False
    params: Any = None
    secret_params: frozenset[str] = frozenset()
    #: ``params`` are the action's static ones (validated at load, the same object every event).
    static: bool = False
    #: Failed with the request perhaps acted on, and not sent again (the action is not repeatable).
    ambiguous: bool = False


@dataclass(slots=True)
class RuleOutcome:
    """What one matched rule did: its steps, the one that failed (if any), the fallback steps."""

    rule: str
    steps: list[StepOutcome] = field(default_factory=list)
    failed: StepOutcome | None = None
    fallback: list[StepOutcome] = field(default_factory=list)


class Executor:
    """Matches an event against the current rules and runs them in order."""

    def __init__(
        self,
        rules: Callable[[], RuleSet],
        retry: RetryPolicy,
        state: StateStore | None = None,
        echoes: Echoes | None = None,
        gates: Gates | None = None,
    ) -> None:
        self._gates = gates or MemoryGates()
        self._rules = rules
        self._retry = retry
        self._state = state
        self._echoes = echoes
        self._policies: dict[RetrySpec | None, RetryPolicy] = {None: retry}

    @property
    def tracks_trials(self) -> bool:
        """Whether entries past ``max_deliveries`` can be tried alone (a state store marks them)."""
        return self._state is not None

    async def trial_begun(self, event_key: str) -> bool:
        return self._state is not None and await trial_begun(self._state, event_key)

    async def begin_trial(self, event_key: str) -> None:
        if self._state is not None:
            await begin_trial(self._state, event_key)

    async def end_trial(self, event_key: str) -> None:
        if self._state is not None:
            await end_trial(self._state, event_key)

    async def flush_state(self) -> None:
        """Make the recorded steps durable (the settler's call before it acks a batch)."""
        if self._state is not None:
            await self._state.flush()

    async def execute(self, event: Event, *, redelivered: bool = False) -> list[RuleOutcome]:
        """Run the matching rules; on a redelivery, skip the steps that completed before.

        Evaluating the event's conditions and templates shares one budget (``rules.eval_timeout_s``
        and the size bounds); a rule whose conditions go past it fails the event, named."""
        if bounds.should_pace():  # other events' evaluations held the loop: let it poll first
            await bounds.pace()
        token = bounds.start_event()
        try:
            return await self._execute(event, redelivered)
        finally:
            bounds.end_event(token)

    def execute_inert(self, event: Event) -> list[RuleOutcome] | None:
        """The outcomes of an event whose candidate rules are all inert (``Rule.inert``: ungated,
        only actions that do nothing and cannot fail, such as ``noop``), found without awaiting:
        the conditions evaluated on the event's budget, the echo taken, each matched rule's steps
        recorded as done. None, with nothing evaluated or taken, when the event needs ``execute``:
        a candidate that acts, evaluations that must let the loop poll first, a shared echo."""
        rules = self._rules()
        if not all(rule.inert for rule in rules.candidates(event)) or bounds.should_pace():
            return None
        echoes = self._echoes
        if echoes is not None and echoes.shares(event.operation):
            return None
        token = bounds.start_event()
        try:
            matched, exceeded = rules.select(event, {"event": event})
        finally:
            bounds.end_event(token)
        if echoes is not None and echoes.take(event.operation, event.device, event.fields):
            matched, exceeded = _own_events_only(matched, exceeded)
        outcomes = [_inert(rule) for rule in matched]
        if exceeded is not None:
            outcomes.append(_exceeded(*exceeded))
        return outcomes

    async def _execute(self, event: Event, redelivered: bool) -> list[RuleOutcome]:
        ctx: dict[str, Any] = {"event": event}
        matched, exceeded = self._rules().select(event, ctx)
        if self._echoes is not None and await self._own(self._echoes, event):
            matched, exceeded = _own_events_only(matched, exceeded)
        outcomes = []
        if matched:
            key = delivery_key(event.stream, event.entry_id)
            done = await self._state.completed(key) if redelivered and self._state is not None else {}
            outcomes = [
                await self._run_rule(rule, event, key, done, redelivered)
                if rule.gate is None
                else await self._gated(rule, rule.gate, event, key, done, redelivered)
                for rule in matched
            ]
        if exceeded is not None:
            outcomes.append(_exceeded(*exceeded))
        return outcomes

    @staticmethod
    async def _own(echoes: Echoes, event: Event) -> bool:
        """Whether the reactor's own call caused this event (a dict lookup; Redis only for the
        rare operations that other processes' calls cause too)."""
        own = echoes.take(event.operation, event.device, event.fields)
        if echoes.shares(event.operation):
            own = await echoes.take_shared(event.operation, event.device, own)
        return own

    async def _gated(
        self, rule: Rule, gate: Gate, event: Event, key: str, done: Steps, redelivered: bool
    ) -> RuleOutcome:
        """A throttled or debounced rule: run when its gate admits the event, else one skipped
        step saying why (the audit trail's row)."""
        try:
            gate_key = gate.render_key({"event": event})
        except PermanentError as exc:
            step = StepOutcome("throttle", "throttle", ok=False, attempts=1, duration_s=0.0, error=str(exc))
            return RuleOutcome(rule.name, failed=step)
        if await self._gates.admit(
            f"{rule.name}:{gate_key}", gate.window_s, sliding=gate.sliding, holder=key
        ):
            return await self._run_rule(rule, event, key, done, redelivered)
        what = (
            f"debounced: key {gate_key!r} was not quiet for {gate.window_s:g}s"
            if gate.sliding
            else (f"throttled: key {gate_key!r} fired less than {gate.window_s:g}s ago")
        )
        skipped = StepOutcome(
            "throttle", "throttle", ok=True, attempts=0, duration_s=0.0, skipped=True, error=what
        )
        return RuleOutcome(rule.name, steps=[skipped])

    async def _run_rule(
        self, rule: Rule, event: Event, key: str, done: Steps, redelivered: bool
    ) -> RuleOutcome:
        outcome = RuleOutcome(rule.name)
        results: dict[str, Any] = {}
        ctx: dict[str, Any] = {"event": event, "results": results, "redelivered": redelivered}
        policy = self._policies.get(rule.retry)
        if policy is None:  # once per distinct retry table, not per event
            policy = self._policies[rule.retry] = self._retry.overridden(rule.retry)
        for action in rule.actions:
            previous = done.get(step_key(rule.name, action.step), _MISSING)
            if previous is not _MISSING:
                outcome.steps.append(
                    StepOutcome(
                        action.id,
                        action.type,
                        ok=True,
                        attempts=0,
                        duration_s=0.0,
                        result=previous,
                        skipped=True,
                    )
                )
                results[action.id] = previous
                continue
            if self._state is not None and action.impl.has_effect:
                await self._state.accepting()  # StateStoreError: waited out before the effect
            step = await self._run_action(action, rule, event, ctx, policy)
            outcome.steps.append(step)
            if not step.ok:
                outcome.failed = step
                break
            if self._state is not None and action.impl.has_effect:
                await self._state.record(key, rule.name, action.step, step.result)
            results[action.id] = step.result
        if outcome.failed is not None and rule.on_failure:
            ctx["error"] = {
                "action": outcome.failed.action_id,
                "message": outcome.failed.error,
                "status": outcome.failed.status,
                "attempts": outcome.failed.attempts,
            }
            no_retry = RetryPolicy(attempts=1)
            for action in rule.on_failure:
                outcome.fallback.append(await self._run_action(action, rule, event, ctx, no_retry))
        return outcome

    @staticmethod
    async def _run_action(
        action: CompiledAction, rule: Rule, event: Event, ctx: dict[str, Any], policy: RetryPolicy
    ) -> StepOutcome:
        started = time.perf_counter()
        actx = ActionContext(
            event=event,
            rule=rule.name,
            action_id=action.id,
            results=ctx.get("results", {}),
            redelivered=bool(ctx.get("redelivered")),
        )
        secret = action.impl.secret_params
        params = None
        repeatable = True
        try:
            if action.static is None and bounds.should_pace():  # evaluations held the loop: let it poll
                await bounds.pace()
            params = action.render(ctx)
            repeatable = action.impl.may_repeat(params)
            result, attempts = await policy.call(
                lambda: _guarded(action, params, actx), repeatable=repeatable
            )
        except SuspendedError:
            raise  # not this event's failure: the worker holds it until SuperMQ takes the login
        except ActionError as exc:
            ambiguous = not repeatable and isinstance(exc, AmbiguousError)
            error = f"{exc}; not sent again ({action.type} cannot tell a repeat)" if ambiguous else str(exc)
            return StepOutcome(
                action.id,
                action.type,
                ok=False,
                attempts=exc.attempts,
                duration_s=time.perf_counter() - started,
                error=error,
                status=exc.status,
                params=params,
                secret_params=secret,
                static=action.static is not None,
                ambiguous=ambiguous,
            )
        return StepOutcome(
            action.id,
            action.type,
            ok=True,
            attempts=attempts,
            duration_s=time.perf_counter() - started,
            # What an action returns under a secret name (certs.issue's client_key, a config's
            # thing_key) is a Secret from here on: masked in logs, audit and templates, sealed in
            # the state store, sent only by a secret-accepting parameter.
            result=wrap_named(result, is_secret_key) if result else result,
            params=params,
            secret_params=secret,
            static=action.static is not None,
        )


def _own_events_only(
    matched: list[Rule], exceeded: tuple[Rule, str] | None
) -> tuple[list[Rule], tuple[Rule, str] | None]:
    """What an event the reactor's own call caused still runs: the rules that take own events."""
    kept = exceeded if exceeded is not None and exceeded[0].own_events else None
    return [r for r in matched if r.own_events], kept


def _inert(rule: Rule) -> RuleOutcome:
    """An inert rule's outcome: each action done, once, at once (what running it would say)."""
    steps = [
        StepOutcome(
            a.id, a.type, True, 1, 0.0, params=a.static, secret_params=a.impl.secret_params, static=True
        )
        for a in rule.actions
    ]
    return RuleOutcome(rule.name, steps)


def _exceeded(rule: Rule, reason: str) -> RuleOutcome:
    """A rule whose conditions went past an evaluation bound: failed for good, like a 4xx."""
    error = f"conditions went past an evaluation bound: {reason}"
    step = StepOutcome("when", "condition", ok=False, attempts=1, duration_s=0.0, error=error)
    return RuleOutcome(rule.name, failed=step)


async def _guarded(action: CompiledAction, params: Any, actx: ActionContext) -> Any:
    """Run the action; an unexpected exception is a bug in the action, reported as permanent."""
    try:
        return await action.impl.run(params, actx)
    except ActionError:
        raise
    except Exception as exc:
        raise PermanentError(f"{action.type} raised {type(exc).__name__}: {exc}") from exc


def dead_letter_for(
    event: Event, outcomes: list[RuleOutcome], sealer: Sealer | None = None
) -> DeadLetter | None:
    """The dead-letter record of an event whose rules failed for good, or None (the event
    masked, and sealed by ``sealer`` for replay)."""
    failed = [o for o in outcomes if o.failed is not None]
    if not failed:
        return None
    first = failed[0]
    step = first.failed
    assert step is not None
    extra = f" (and {len(failed) - 1} more rule(s) failed)" if len(failed) > 1 else ""
    # The secrets the rule's earlier steps returned (a config's thing key) may be quoted by the
    # error of the step they were given to: masked by value too.
    results = [s.result for s in first.steps if s.result]
    secrets = event.secrets | revealed_values(results) if results else event.secrets
    return DeadLetter(
        stream=event.stream,
        entry_id=event.entry_id,
        reason="ambiguous" if step.ambiguous else "action_failed",
        error=redact_text(f"{step.error}{extra}", secrets),
        secrets=secrets,
        event=event.raw,
        rule=first.rule,
        action=f"{step.action_id} ({step.type})",
        status=step.status,
        attempts=step.attempts,
        sealed=sealer.seal_json(event.raw) if sealer is not None else "",
    )
