"""Hostile rules are refused at load (file:line, rule), not one event at a time (issue 19).

Each source below passed ``rules check`` before and failed on every event (internals), or was
built when the rule was compiled (a 200,000-item literal: seconds and hundreds of MB at load).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reactor.errors import RuleSetError
from reactor.rules import bounds
from reactor.rules.expressions import Expression, ExpressionError, Template
from reactor.rules.loader import load_rules
from tests.conftest import reactor_cli
from tests.rules.helpers import event, registry, rules_from

EVENT = event({"operation": "config.create", "thing_id": "t", "content": '{"a": 1, "_meta": 2, "name": "n"}'})
CTX: dict[str, Any] = {"event": EVENT, "results": {}}

#: (expression, what the refusal says)
INTERNALS = [
    ("event.__class__", ".__class__ reaches an internal attribute"),
    ("event._fields", "._fields reaches an internal attribute (a key: x['_fields'])"),
    ("event.content.__class__.__mro__", "reaches an internal attribute"),
    ("event['__class__']", "['__class__'] reaches an internal attribute"),
    ("event.get.__globals__", ".__globals__ reaches an internal attribute"),
    ("event.summary.gi_frame", ".gi_frame reaches an internal attribute"),
    ("event | attr('__class__')", "the attr filter is not allowed"),
    ("event | attr('thing_id')", "the attr filter is not allowed"),
    ("event | attr(event.thing_id)", "the attr filter is not allowed"),
    ("[event] | map(attribute='__class__') | list", "map('__class__') reaches an internal attribute"),
    ("[event] | map(attribute='content._x') | list", "map('content._x') reaches an internal attribute"),
    ("[event] | selectattr('__class__') | list", "selectattr('__class__') reaches an internal attribute"),
    ("[event] | sort(attribute='_fields') | list", "sort('_fields') reaches an internal attribute"),
    ("'{0.__class__}'.format(event)", "the format field {0.__class__} looks an attribute up"),
    ("'{0.thing_id}'.format(event)", "the format field {0.thing_id} looks an attribute up"),
    ("'{e.__class__}'.format_map({'e': event})", "the format field {e.__class__} looks an attribute up"),
    ("'{0:{1.__class__}}'.format(1, event)", "looks an attribute up"),
    ("['{0.__class__}'][0].format(event)", "the format field {0.__class__} looks an attribute up"),
    ("[event] | map('attr', '__class__') | list", "the attr filter is not allowed"),
    ("__import__('os').system('id')", "__import__ is not a name rules can use"),
    ("[event] | select('attr') | list", "the attr filter is not allowed"),
]

#: (source, what the refusal names): literals past a bound, refused without being built
CONSTANTS = [
    ("'a' * 10**9", "rules.max_value_size"),
    ("2 ** (10**9)", "rules.max_int_bits"),
    ("[0] * 999999 * 2", "rules.max_value_size"),
    ("'a'.ljust(10**9)", "rules.max_value_size"),
    ("'-' * 999999 ~ '-' * 999999", "rules.max_value_size"),
    ("('a' * 999999) | replace('a', 'bb')", "rules.max_value_size"),
]


@pytest.fixture(autouse=True)
def _default_limits() -> Iterator[None]:
    previous = bounds.configure(bounds.Limits())
    yield
    bounds.configure(previous)


def _rule(condition: str, message: str = "hello") -> str:
    return f"""# a rule
[[rule]]
name = "hostile"
on = ["config.create"]
when = [{json.dumps(condition)}]

[[rule.actions]]
type = "log"
message = {json.dumps(message)}
"""


@pytest.mark.parametrize(("source", "reason"), INTERNALS)
def test_a_condition_reaching_internals_is_refused_at_load_with_file_line_and_rule(
    tmp_path: Path, source: str, reason: str
) -> None:
    with pytest.raises(RuleSetError) as raised:
        rules_from(tmp_path, _rule(source))
    (error,) = raised.value.errors
    assert str(error).startswith(f"{tmp_path}/rules/r.toml:2: rule 'hostile': when: ")
    assert reason in str(error)


@pytest.mark.parametrize(("source", "reason"), INTERNALS)
def test_a_template_reaching_internals_is_refused_at_load_naming_the_action(
    tmp_path: Path, source: str, reason: str
) -> None:
    message = f"thing {{{{ event.thing_id }}}}\nthen {{{{ {source} }}}}"
    with pytest.raises(RuleSetError) as raised:
        rules_from(tmp_path, _rule("true", message))
    (error,) = raised.value.errors
    assert str(error).startswith(f"{tmp_path}/rules/r.toml:7: rule 'hostile': actions[0]: ")
    assert reason in str(error)
    assert "line 2 of the template" in str(error)  # where in a template of several lines


@pytest.mark.parametrize(("source", "reason"), CONSTANTS)
def test_a_constant_past_a_bound_is_refused_at_load_without_being_built(
    tmp_path: Path, source: str, reason: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(RuleSetError) as raised:
        rules_from(tmp_path, _rule(f"({source}) is defined", f"{{% set x = {source} %}}{{{{ x }}}}"))
    assert time.perf_counter() - started < 1.0
    when, action = raised.value.errors
    for error, line, where in ((when, 2, "when"), (action, 7, "actions[0]")):
        assert str(error).startswith(f"{tmp_path}/rules/r.toml:{line}: rule 'hostile': {where}: ")
        assert "a constant goes past a bound" in str(error)
        assert reason in str(error)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "source",
    [
        "[" + ",".join(["0"] * 200_000) + "]",
        "{" + ",".join(f"'k{i}': {i}" for i in range(50_000)) + "}",
        "event.thing_id" + " ~ 'x'" * 20_000,
    ],
    ids=["list-200k", "dict-50k", "concat-20k"],
)
def test_a_huge_literal_is_refused_before_it_is_parsed(tmp_path: Path, source: str) -> None:
    started = time.perf_counter()
    with pytest.raises(RuleSetError, match=r"rule 'hostile': when: .*more than 10,000 tokens"):
        rules_from(tmp_path, _rule(source))
    assert time.perf_counter() - started < 1.0  # was 3 s and ~170 MB for the 200k list
    bounds.configure(bounds.Limits(max_template_tokens=400_001))
    assert "more than" not in _refusal(source)  # the limit is the setting


def _refusal(source: str) -> str:
    try:
        Expression(source)
    except ExpressionError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("event.content['_meta']", 2),  # an underscore key, as a key
        ("event.content.name", "n"),
        ("'{0}-{1}'.format(event.thing_id, 2)", "t-2"),
        ("'{x}'.format_map({'x': event.thing_id})", "t"),
        ("'{0[name]}'.format(event.content)", "n"),
        ("[3, 1, 2] | sort | list", [1, 2, 3]),
        ("'ab' * 3 ~ 'c'.ljust(2)", "abababc "),
        ("[event] | map(attribute='thing_id') | list", ["t"]),
        ("2 ** 64 > 10", True),
        ("1 / 0 if false else 1", 1),  # a literal that fails is the event's to report, not load's
    ],
)
def test_ordinary_rules_still_load_and_evaluate(source: str, value: Any) -> None:
    assert Expression(source).evaluate(CTX) == value


def test_a_format_string_kept_in_a_variable_is_checked_where_it_is_written(tmp_path: Path) -> None:
    template = "{% set f = '{0.__class__}' %}\n{{ f.format(event) }}"
    with pytest.raises(ExpressionError, match=r"the format field \{0.__class__\} looks an attribute up"):
        Template(template)
    assert Template("{% set f = '{0}!' %}{{ f.format(event.thing_id) }}").render(CTX) == "t!"
    ns = "{% set ns = namespace(a=1) %}{% set ns.__class__ = 2 %}{{ ns.a }}"
    with pytest.raises(ExpressionError, match=r"\.__class__ reaches an internal attribute"):
        Template(ns)


@pytest.mark.parametrize(
    "source",
    ["({'a': 1}.x and [1])", "([] | first) | upper", "('' | min) | int", "{}.x or 1"],
)
def test_a_literal_that_is_undefined_is_an_expression_error_never_a_traceback(source: str) -> None:
    """Jinja's optimizer raised UndefinedError out of the compiler (``{}.x and ..``); the screen's
    folder compared an Undefined (which refuses comparisons): both are one line at load or a
    failure per event now (found by a 26,000-source fuzz of load and evaluation)."""
    with pytest.raises(ExpressionError, match=r"has no attribute|No (first|aggregated) item"):
        Expression(source).evaluate(CTX)  # at load (a literal) or when evaluated


def test_a_failing_literal_is_still_reported_per_event() -> None:
    with pytest.raises(ExpressionError, match="ZeroDivisionError"):
        Expression("1 / 0").evaluate(CTX)
    assert Template("{{ event.thing_id }}: {{ 'a' * 3 }}").render(CTX) == "t: aaa"


def test_the_shipped_rules_pass_the_screen() -> None:
    shipped = Path(__file__).resolve().parents[2] / "rules"
    assert load_rules(shipped, registry()).rules


def test_rules_check_refuses_a_hostile_rule_in_one_line_with_the_configured_bounds(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(_rule("event.__class__ is defined", "{{ 'ab' * 400000 }}"))
    result = reactor_cli("rules", "check", str(rules))
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if "r.toml" in line]
    assert len(lines) == 1, result.stdout  # 800,000 characters: within the default bound
    assert f"{rules}/r.toml:2: rule 'hostile': when: " in lines[0]
    assert ".__class__ reaches an internal attribute" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    config = tmp_path / "config.toml"
    config.write_text("[rules]\nmax_value_size = 100000\n")
    result = reactor_cli("--config", str(config), "rules", "check", str(rules))
    assert f"{rules}/r.toml:7: rule 'hostile': actions[0]: " in result.stdout  # the setting counts
    assert "rules.max_value_size (100,000)" in result.stdout
