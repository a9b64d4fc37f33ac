"""Loading ``rules/*.toml``: parse, validate every rule and action, compile, or say exactly what is wrong.

Every error names the file, the line (from the TOML parser, or of the ``[[rule]]`` /
``[[rule.actions]]`` header it belongs to) and the rule. A directory with any error yields no
rule set at all, so a broken directory never replaces a working one.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from pydantic import TypeAdapter, ValidationError

from reactor.actions.base import Action, ActionRegistry
from reactor.errors import RuleError, RuleSetError
from reactor.rules.expressions import ExpressionError, Template
from reactor.rules.model import (
    AllCondition,
    CompiledAction,
    Condition,
    Rule,
    RuleSpec,
    compile_condition,
    compile_gate,
    step_identity,
)
from reactor.rules.ruleset import RuleSet

_RULE_HEADER = re.compile(r"^\s*\[\[\s*rule\s*\]\]")
_SUB_HEADER = re.compile(r"^\s*\[\[\s*rule\.(actions|on_failure)\s*\]\]")
_TOML_LINE = re.compile(r"at line (\d+)")


@dataclass
class _Lines:
    """Where each rule and each of its action tables starts in the file."""

    rules: list[int] = field(default_factory=list)
    subs: list[dict[str, list[int]]] = field(default_factory=list)

    @classmethod
    def scan(cls, text: str) -> _Lines:
        out = cls()
        for number, line in enumerate(text.splitlines(), 1):
            if _RULE_HEADER.match(line):
                out.rules.append(number)
                out.subs.append({"actions": [], "on_failure": []})
            elif (sub := _SUB_HEADER.match(line)) and out.subs:
                out.subs[-1][sub.group(1)].append(number)
        return out

    def rule(self, index: int) -> int | None:
        return self.rules[index] if index < len(self.rules) else None

    def action(self, rule_index: int, kind: str, index: int) -> int | None:
        lines = self.subs[rule_index][kind] if rule_index < len(self.subs) else []
        return lines[index] if index < len(lines) else self.rule(rule_index)


def load_rules(directory: Path, registry: ActionRegistry) -> RuleSet:
    """Every ``*.toml`` under ``directory`` (sorted by path) as one RuleSet, or ``RuleSetError``."""
    if not directory.is_dir():
        raise RuleSetError([RuleError("rules directory not found", file=str(directory))])
    rules: list[Rule] = []
    errors: list[RuleError] = []
    files = sorted(p for p in directory.rglob("*.toml") if not p.is_dir())  # a directory's files are found
    for path in files:
        file_rules, file_errors = load_file(path, registry)
        rules.extend(file_rules)
        errors.extend(file_errors)
    seen: dict[str, Rule] = {}
    for rule in rules:
        first = seen.setdefault(rule.name, rule)
        if first is not rule:
            errors.append(
                RuleError(
                    f"duplicate rule name (first at {first.file}:{first.line})",
                    file=rule.file,
                    line=rule.line,
                    rule=rule.name,
                )
            )
    if errors:
        raise RuleSetError(errors)
    return RuleSet(tuple(rules), tuple(str(p) for p in files))


def read_rule_file(path: Path) -> str:
    """The text of a regular file; ``OSError`` for anything else. Opened without blocking, so a
    FIFO (or a device) named ``*.toml`` is refused at once instead of waiting for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as file:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "special"
            raise OSError(f"not a regular file ({kind}); only regular files are read")
        return file.read().decode("utf-8")


def load_file(path: Path, registry: ActionRegistry) -> tuple[list[Rule], list[RuleError]]:
    """The rules of one file, and the errors found in it."""
    name = str(path)
    try:
        text = read_rule_file(path)
        document = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return [], [RuleError(f"cannot read: {reason}", file=name)]
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE.search(str(exc))
        return [], [RuleError(f"invalid TOML: {exc}", file=name, line=int(match.group(1)) if match else None)]
    except RecursionError:
        return [], [RuleError("invalid TOML: arrays or tables nested too deeply", file=name)]
    unknown = sorted(set(document) - {"rule"})
    errors = [
        RuleError(f"unknown top-level key {k!r} (rules are [[rule]] tables)", file=name) for k in unknown
    ]
    raw_rules = document.get("rule", [])
    if not isinstance(raw_rules, list):
        return [], [*errors, RuleError("'rule' must be an array of tables: [[rule]]", file=name)]
    lines = _Lines.scan(text)
    rules: list[Rule] = []
    for index, raw in enumerate(raw_rules):
        if not isinstance(raw, dict):
            errors.append(RuleError("a rule must be a table: [[rule]]", file=name, line=lines.rule(index)))
            continue
        try:
            rule, problems = _compile_rule(raw, registry, name, index, lines)
        except RecursionError:
            rule_name = str(raw.get("name", f"#{index + 1}"))
            errors.append(RuleError("nested too deeply", file=name, line=lines.rule(index), rule=rule_name))
            continue
        errors.extend(problems)
        if rule is not None:
            rules.append(rule)
    return rules, errors


class _Errors:
    """The errors of one rule, each naming the file, a line and the rule."""

    def __init__(self, file: str, line: int | None, rule: str) -> None:
        self.file, self.line, self.rule = file, line, rule
        self.found: list[RuleError] = []

    def add(self, detail: str, line: int | None = None) -> None:
        at = self.line if line is None else line
        self.found.append(RuleError(detail, file=self.file, line=at, rule=self.rule))


def _tables(value: Any) -> list[dict[str, Any]]:
    """What a table array that failed validation still holds that can be checked."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _compile_rule(
    raw: dict[str, Any], registry: ActionRegistry, file: str, index: int, lines: _Lines
) -> tuple[Rule | None, list[RuleError]]:
    """The rule, or every error found in it: the schema, each condition, each action."""
    errors = _Errors(file, lines.rule(index), str(raw.get("name", f"#{index + 1}")))
    spec = None
    try:
        spec = RuleSpec.model_validate(raw)
        errors.rule = spec.name
    except ValidationError as exc:
        for message in _validation_messages(exc):
            errors.add(message)
    when = spec.when if spec else raw.get("when", [])
    condition = _compile_when(when if isinstance(when, list) else [], errors)
    enabled = spec.enabled if spec else True  # a rule that is off is not held to the profile
    actions = _compile_actions(
        "actions",
        spec.actions if spec else _tables(raw.get("actions")),
        registry,
        index,
        lines,
        errors,
        enabled=enabled,
    )
    on_failure = _compile_actions(
        "on_failure",
        spec.on_failure if spec else _tables(raw.get("on_failure")),
        registry,
        index,
        lines,
        errors,
        enabled=enabled,
    )
    gate = None
    if spec is not None:
        try:
            gate = compile_gate(spec)
        except ValueError as exc:  # ExpressionError too: a key template that does not compile
            errors.add(f"throttle: {exc}")
    if spec is None or errors.found:
        return None, errors.found
    if not spec.enabled:
        return _disabled(spec, file, errors.line, actions), []
    rule = Rule(
        name=spec.name,
        description=spec.description,
        on=tuple(spec.on),
        streams=tuple(spec.streams),
        condition=condition,
        actions=actions,
        on_failure=on_failure,
        retry=spec.retry,
        file=file,
        line=errors.line,
        own_events=spec.own_events,
        gate=gate,
    )
    return rule, []


def _compile_when(items: list[Any], errors: _Errors) -> Condition | None:
    """Every condition of ``when`` compiled, or an error for each that does not."""
    problems: list[str] = []
    compiled = [compile_condition(item, problems) for item in items]
    for problem in problems:
        errors.add(f"when: {problem}")
    return AllCondition(compiled) if compiled else None


def _compile_actions(
    kind: str,
    items: list[dict[str, Any]],
    registry: ActionRegistry,
    index: int,
    lines: _Lines,
    errors: _Errors,
    *,
    enabled: bool = True,
) -> tuple[CompiledAction, ...]:
    compiled = []
    for i, item in enumerate(items):
        at = lines.action(index, kind, i)
        action, problems = _compile_action(item, registry, f"{kind}[{i}]", at, enabled=enabled)
        for problem in problems:
            errors.add(f"{kind}[{i}]: {problem}", at)
        if action is not None:
            compiled.append(action)
    seen: set[str] = set()
    for action in compiled:
        if action.id in seen:
            errors.add(f"{kind}: duplicate action id {action.id!r}")
        seen.add(action.id)
    return _distinct_steps(compiled)


def _distinct_steps(actions: list[CompiledAction]) -> tuple[CompiledAction, ...]:
    """Identical actions of one rule (same type and parameters, no id) as steps ``#2``, ``#3``…"""
    occurrences: dict[str, int] = {}
    out = []
    for action in actions:
        n = occurrences[action.step] = occurrences.get(action.step, 0) + 1
        out.append(action if n == 1 else replace(action, step=f"{action.step}#{n}"))
    return tuple(out)


def _disabled(spec: RuleSpec, file: str, line: int | None, actions: tuple[CompiledAction, ...]) -> Rule:
    """A disabled rule is validated like any other but listens to nothing."""
    return Rule(spec.name, spec.description, (), (), None, actions, (), spec.retry, file, line)


def _shape_problems(impl: Action, type_name: str, params: dict[str, Any], enabled: bool) -> list[str]:
    """Parameters unknown or missing, and what the platform's API profile cannot do with them
    (asked only of a rule that is on: a shipped rule that is off loads on every profile)."""
    model_fields = impl.params_model.model_fields
    problems = []
    unknown = sorted(set(params) - set(model_fields))
    if unknown:
        problems.append(f"{type_name}: unknown parameter(s) {', '.join(unknown)}")
    missing = sorted(n for n, f in model_fields.items() if f.is_required() and n not in params)
    if missing:
        problems.append(f"{type_name}: missing parameter(s) {', '.join(missing)}")
    problems += impl.check_params(params)
    refusal = impl.refused(params) if enabled else ""
    if refusal:
        problems.append(f"{type_name}: {refusal}")
    return problems


def _compile_action(
    raw: dict[str, Any], registry: ActionRegistry, default_id: str, line: int | None, *, enabled: bool = True
) -> tuple[CompiledAction | None, list[str]]:
    """The action, or every problem found in it (parameters unknown, missing, invalid)."""
    params = dict(raw)
    type_name = params.pop("type", None)
    given_id = params.pop("id", None)
    action_id = default_id if given_id is None else str(given_id)
    if not isinstance(type_name, str):
        return None, ["missing 'type'"]
    impl = registry.get(type_name)
    if impl is None:
        return None, [f"unknown action type {type_name!r} (known: {', '.join(registry.names())})"]
    model_fields = impl.params_model.model_fields
    problems = _shape_problems(impl, type_name, params, enabled)
    templates = {}
    for key, value in params.items():
        try:
            templates[key] = Template(value)
        except ExpressionError as exc:
            problems.append(str(exc))
            continue
        if key in model_fields and templates[key].is_static:  # literals now; templated ones when rendered
            try:
                TypeAdapter(cast(Any, model_fields[key].annotation)).validate_python(value)
            except ValidationError as exc:
                problems.append(f"{type_name}: parameter {key!r}: {exc.errors()[0]['msg']}")
    if problems:
        return None, problems
    static = None
    if all(t.is_static for t in templates.values()):  # the same every event: validated once, here
        try:
            static = impl.params_model.model_validate({k: t.source for k, t in templates.items()})
        except ValidationError as exc:
            return None, [f"{type_name}: {m}" for m in _validation_messages(exc)]
    step = step_identity(None if given_id is None else action_id, type_name, params)
    return CompiledAction(
        id=action_id, type=type_name, impl=impl, params=templates, line=line, static=static, step=step
    ), []


def _validation_messages(exc: ValidationError) -> list[str]:
    """One message per error pydantic found, naming the key."""
    messages = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        messages.append(f"{key}: {msg}")
    return messages
