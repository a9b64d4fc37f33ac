"""Rules as loaded: the TOML schema (pydantic) and the compiled, ready-to-run form."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reactor.actions.base import Action, Params
from reactor.errors import PermanentError
from reactor.rules.bounds import BoundExceeded, Section
from reactor.rules.expressions import Expression, ExpressionError, Template, revealing
from reactor.secrets import masked, reveal


class RetrySpec(BaseModel):
    """A rule's retry policy; fields left out take the defaults from settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int | None = Field(default=None, ge=1, le=100)
    initial_s: float | None = Field(default=None, ge=0)
    max_wait_s: float | None = Field(default=None, ge=0)
    max_total_s: float | None = Field(default=None, ge=0)
    jitter_s: float | None = Field(default=None, ge=0)


class ThrottleSpec(BaseModel):
    """``throttle = { key = "...", per_s = ... }``: one firing per key per ``per_s`` seconds;
    with the rule's ``debounce_s`` instead of ``per_s``, the key of the debounce."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1)
    per_s: float | None = Field(default=None, gt=0, le=30 * 86_400)


class RuleSpec(BaseModel):
    """One ``[[rule]]`` table as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    description: str = ""
    enabled: bool = True
    on: list[str] = Field(min_length=1)
    streams: list[str] = []
    when: list[str | dict[str, Any]] = []
    actions: list[dict[str, Any]] = Field(min_length=1)
    on_failure: list[dict[str, Any]] = []
    retry: RetrySpec | None = None
    #: See the events the reactor's own calls cause (reactor/events/echoes.py); off by default.
    own_events: bool = False
    #: Rule gates (reactor/delivery/gates.py): at most one firing per key per window, or only
    #: after the key was quiet ``debounce_s`` (keyed by ``throttle.key``, else the event's device).
    throttle: ThrottleSpec | None = None
    debounce_s: float = Field(default=0.0, ge=0, le=30 * 86_400)


@dataclass(frozen=True, slots=True)
class Gate:
    """A rule's compiled throttle or debounce: the key template and the window."""

    key: Template
    window_s: float
    sliding: bool

    def render_key(self, ctx: Mapping[str, Any]) -> str:
        """The gate's key for this event (``PermanentError`` when its template fails)."""
        try:
            with Section():
                return str(self.key.render(ctx))
        except (ExpressionError, BoundExceeded) as exc:
            raise PermanentError(f"throttle key template failed: {exc}") from exc


def compile_gate(spec: RuleSpec) -> Gate | None:
    """The rule's gate, or None; ``ExpressionError`` for a key that does not compile, and
    ``ValueError`` when both ``throttle.per_s`` and ``debounce_s`` are given."""
    per_s = spec.throttle.per_s if spec.throttle is not None else None
    if per_s is not None and spec.debounce_s:
        raise ValueError("throttle.per_s and debounce_s: give one (debounce_s is keyed by throttle.key)")
    if per_s is None and not spec.debounce_s:
        if spec.throttle is not None:
            raise ValueError("throttle needs per_s (or the rule a debounce_s)")
        return None
    key = Template(spec.throttle.key if spec.throttle is not None else "{{ event.device }}")
    return Gate(key, per_s, sliding=False) if per_s is not None else Gate(key, spec.debounce_s, sliding=True)


# ---- conditions -------------------------------------------------------------------------------


class Condition:
    """A compiled condition: ``failure(ctx)`` is None when it holds, else the reason it does not."""

    __slots__ = ()

    def failure(self, ctx: Mapping[str, Any]) -> str | None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class ExprCondition(Condition):
    __slots__ = ("expr",)

    def __init__(self, source: str) -> None:
        self.expr = Expression(source)

    def failure(self, ctx: Mapping[str, Any]) -> str | None:
        try:
            value = self.expr.evaluate(ctx)
        except ExpressionError as exc:
            return str(exc)
        return None if value else f"{self.expr.source!r} is {value!r}"

    def describe(self) -> str:
        return self.expr.source


class AllCondition(Condition):
    __slots__ = ("items",)

    def __init__(self, items: list[Condition]) -> None:
        self.items = items

    def failure(self, ctx: Mapping[str, Any]) -> str | None:
        for item in self.items:
            reason = item.failure(ctx)
            if reason is not None:
                return reason
        return None

    def describe(self) -> str:
        return "all(" + ", ".join(i.describe() for i in self.items) + ")"


class AnyCondition(Condition):
    __slots__ = ("items",)

    def __init__(self, items: list[Condition]) -> None:
        self.items = items

    def failure(self, ctx: Mapping[str, Any]) -> str | None:
        reasons = []
        for item in self.items:
            reason = item.failure(ctx)
            if reason is None:
                return None
            reasons.append(reason)
        return "none of: " + "; ".join(reasons)

    def describe(self) -> str:
        return "any(" + ", ".join(i.describe() for i in self.items) + ")"


class NotCondition(Condition):
    __slots__ = ("item",)

    def __init__(self, item: Condition) -> None:
        self.item = item

    def failure(self, ctx: Mapping[str, Any]) -> str | None:
        if self.item.failure(ctx) is None:
            return f"not({self.item.describe()}) is False"
        return None

    def describe(self) -> str:
        return f"not({self.item.describe()})"


def compile_condition(node: str | dict[str, Any] | list[Any], errors: list[str] | None = None) -> Condition:
    """``"expr"`` | ``{all = [...]}`` | ``{any = [...]}`` | ``{not = node}`` | ``[...]`` (all).

    ``ExpressionError`` for the first part that does not compile; with ``errors``, every such part
    is recorded there instead (and the condition returned is not to be used)."""
    try:
        return _compile_condition(node, errors)
    except ExpressionError as exc:
        if errors is None:
            raise
        errors.append(str(exc))
        return AllCondition([])


def _compile_condition(node: str | dict[str, Any] | list[Any], errors: list[str] | None) -> Condition:
    if isinstance(node, str):
        return ExprCondition(node)
    if isinstance(node, list):
        return AllCondition([compile_condition(n, errors) for n in node])
    if isinstance(node, dict) and len(node) == 1:
        ((key, value),) = node.items()
        if key in ("all", "any") and isinstance(value, list):
            items = [compile_condition(n, errors) for n in value]
            return AllCondition(items) if key == "all" else AnyCondition(items)
        if key == "not":
            return NotCondition(compile_condition(value, errors))
    shown = repr(node) if len(repr(node)) <= 200 else f"{repr(node)[:200]}…"
    raise ExpressionError(f"a condition is a string, a list, or a table with one key all/any/not: {shown}")


# ---- actions ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledAction:
    """One action of a rule, its parameters compiled to templates.

    ``id`` names it (``results.<id>``, logs, dead-letter records; ``actions[i]`` by default);
    ``step`` is what the state store records it under: its id when one is given, else its type,
    with a digest of its type and parameter templates, so a recorded step means this action
    whatever its position and stops counting once the action is changed (see ``step_identity``).
    """

    id: str
    type: str
    impl: Action
    params: Mapping[str, Template]
    line: int | None
    #: The parameters when none is templated: validated at load, the same (frozen) every event.
    static: Params | None = None
    step: str = ""

    def __post_init__(self) -> None:
        if not self.step:  # built by hand, not by the loader: named by its id
            source = {k: t.source for k, t in self.params.items()}
            object.__setattr__(self, "step", step_identity(self.id, self.type, source))

    def render(self, ctx: Mapping[str, Any]) -> Params:
        """Rendered and validated parameters; ``PermanentError`` when that fails (it would every time)."""
        if self.static is not None:
            return self.static
        try:
            secret = self.impl.secret_params
            with Section():  # the event's evaluation clock runs
                values = {k: _render(t, ctx, k in secret) for k, t in self.params.items()}
            values = _sendable(values, secret)
        except ExpressionError as exc:
            raise PermanentError(f"parameter template failed: {exc}") from exc
        except BoundExceeded as exc:
            raise PermanentError(f"parameter template went past an evaluation bound: {exc}") from exc
        try:
            return self.impl.params_model.model_validate(values)
        except ValueError as exc:
            raise PermanentError(f"invalid parameters after rendering: {_first_error(exc)}") from exc

    def rendered_preview(self, ctx: Mapping[str, Any]) -> dict[str, Any]:
        """Rendered parameters for a dry run; failures shown in place."""
        out: dict[str, Any] = {}
        for key, template in self.params.items():
            try:
                with Section():
                    out[key] = template.render(ctx)
            except BoundExceeded as exc:
                out[key] = f"<error: went past an evaluation bound: {exc}>"
            except ExpressionError as exc:
                depends = "results." in str(template.source) and not ctx.get("results")
                out[key] = f"<at run time: {template.source}>" if depends else f"<error: {exc}>"
        return out


def _render(template: Template, ctx: Mapping[str, Any], secret: bool) -> Any:
    if not secret:
        return template.render(ctx)
    with revealing():  # a Secret in its text is its value
        return template.render(ctx)


def _sendable(values: dict[str, Any], secret_params: frozenset[str]) -> dict[str, Any]:
    """What the action is given: a Secret's value in a secret-accepting parameter, the mask in
    any other (a template cannot send a key where it would be shown or stored)."""
    for key, value in values.items():
        if type(value) is not str and value is not None:  # text and null hold no Secret
            values[key] = reveal(value) if key in secret_params else masked(value)
    return values


def step_identity(given_id: str | None, type_name: str, params: Mapping[str, Any]) -> str:
    """The state-store name of an action: ``<id or type>:<digest of type and parameters>``.

    Positions are not part of it: a reload that inserts or moves actions leaves every recorded
    step meaning the action it was recorded for; an edited action (type or any parameter
    template) is another step, so its old record does not count for it. Identical actions of one
    rule are told apart by ``#n`` (their order among themselves) where the rule is compiled."""
    text = json.dumps({"type": type_name, "params": params}, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{given_id if given_id is not None else type_name}:{digest}"


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc)


@dataclass(frozen=True, slots=True)
class Rule:
    """A loaded rule, ready to match and run."""

    name: str
    description: str
    on: tuple[str, ...]
    streams: tuple[str, ...]
    condition: Condition | None
    actions: tuple[CompiledAction, ...]
    on_failure: tuple[CompiledAction, ...]
    retry: RetrySpec | None
    file: str
    line: int | None
    own_events: bool = False
    gate: Gate | None = None
    #: Ungated, and every action inert with static parameters: nothing to await, nothing can fail.
    inert: bool = field(init=False, default=False, compare=False)

    def __post_init__(self) -> None:
        inert = self.gate is None and all(a.impl.inert and a.static is not None for a in self.actions)
        object.__setattr__(self, "inert", inert)

    def failure(self, ctx: Mapping[str, Any]) -> str | None:
        """None when the rule's conditions hold for ``ctx``, else the first reason they do not;
        ``BoundExceeded`` when evaluating them went past a bound (neither holds nor fails)."""
        return None if self.condition is None else self.condition.failure(ctx)
