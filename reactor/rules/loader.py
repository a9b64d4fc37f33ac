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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydantic import TypeAdapter, ValidationError

from reactor.actions.base import ActionRegistry
from reactor.errors import RuleError, RuleSetError
from reactor.rules.expressions import ExpressionError, Template
from reactor.rules.model import CompiledAction, Rule, RuleSpec, compile_condition
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
        try:
            rules.append(_compile_rule(raw, registry, name, index, lines))
        except RuleError as exc:
            errors.append(exc)
        except RecursionError:
            rule = str(raw.get("name", f"#{index + 1}")) if isinstance(raw, dict) else f"#{index + 1}"
            errors.append(RuleError("nested too deeply", file=name, line=lines.rule(index), rule=rule))
    return rules, errors


def _compile_rule(
    raw: dict[str, Any], registry: ActionRegistry, file: str, index: int, lines: _Lines
) -> Rule:
    line = lines.rule(index)
    rule_name = str(raw.get("name", f"#{index + 1}"))
    try:
        spec = RuleSpec.model_validate(raw)
    except ValidationError as exc:
        raise RuleError(_validation_message(exc), file=file, line=line, rule=rule_name) from None
    try:
        condition = compile_condition(spec.when) if spec.when else None
    except ExpressionError as exc:
        raise RuleError(f"when: {exc}", file=file, line=line, rule=spec.name) from None

    def actions(kind: str, items: list[dict[str, Any]]) -> tuple[CompiledAction, ...]:
        compiled = []
        for i, item in enumerate(items):
            at = lines.action(index, kind, i)
            try:
                compiled.append(_compile_action(item, registry, f"{kind}[{i}]", at))
            except (RuleError, ExpressionError) as exc:
                detail = exc.detail if isinstance(exc, RuleError) else str(exc)
                raise RuleError(f"{kind}[{i}]: {detail}", file=file, line=at, rule=spec.name) from None
        _check_unique_ids(compiled, kind)
        return tuple(compiled)

    try:
        compiled_actions = actions("actions", spec.actions)
        compiled_failure = actions("on_failure", spec.on_failure)
    except ValueError as exc:
        raise RuleError(str(exc), file=file, line=line, rule=spec.name) from None
    return (
        Rule(
            name=spec.name,
            description=spec.description,
            on=tuple(spec.on),
            streams=tuple(spec.streams),
            condition=condition,
            actions=compiled_actions,
            on_failure=compiled_failure,
            retry=spec.retry,
            file=file,
            line=line,
            own_events=spec.own_events,
        )
        if spec.enabled
        else _disabled(spec, file, line, compiled_actions)
    )


def _disabled(spec: RuleSpec, file: str, line: int | None, actions: tuple[CompiledAction, ...]) -> Rule:
    """A disabled rule is validated like any other but listens to nothing."""
    return Rule(spec.name, spec.description, (), (), None, actions, (), spec.retry, file, line)


def _check_unique_ids(actions: list[CompiledAction], kind: str) -> None:
    seen: set[str] = set()
    for action in actions:
        if action.id in seen:
            raise ValueError(f"{kind}: duplicate action id {action.id!r}")
        seen.add(action.id)


def _compile_action(
    raw: dict[str, Any], registry: ActionRegistry, default_id: str, line: int | None
) -> CompiledAction:
    params = dict(raw)
    type_name = params.pop("type", None)
    action_id = str(params.pop("id", default_id))
    if not isinstance(type_name, str):
        raise RuleError("missing 'type'")
    impl = registry.get(type_name)
    if impl is None:
        raise RuleError(f"unknown action type {type_name!r} (known: {', '.join(registry.names())})")
    model_fields = impl.params_model.model_fields
    unknown = sorted(set(params) - set(model_fields))
    if unknown:
        raise RuleError(f"{type_name}: unknown parameter(s) {', '.join(unknown)}")
    missing = sorted(n for n, f in model_fields.items() if f.is_required() and n not in params)
    if missing:
        raise RuleError(f"{type_name}: missing parameter(s) {', '.join(missing)}")
    templates = {k: Template(v) for k, v in params.items()}
    for key, template in templates.items():
        if template.is_static:  # literal values are checked now; templated ones when rendered
            try:
                TypeAdapter(cast(Any, model_fields[key].annotation)).validate_python(template.source)
            except ValidationError as exc:
                raise RuleError(f"{type_name}: parameter {key!r}: {exc.errors()[0]['msg']}") from None
    static = None
    if all(t.is_static for t in templates.values()):  # the same every event: validated once, here
        try:
            static = impl.params_model.model_validate({k: t.source for k, t in templates.items()})
        except ValidationError as exc:
            raise RuleError(f"{type_name}: {_validation_message(exc)}") from None
    return CompiledAction(id=action_id, type=type_name, impl=impl, params=templates, line=line, static=static)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{key}: {msg}")
    return "; ".join(parts)
