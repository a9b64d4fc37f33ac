"""Templates keep types, fail loudly on missing fields, and compile once at load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jinja2 import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from reactor.errors import PermanentError, RuleSetError
from reactor.events.model import Event
from reactor.rules.expressions import _ENV, _OPTIONAL_IDS, Expression, ExpressionError, Template
from tests.rules.helpers import event, rules_from

EVENT = event(
    {
        "operation": "config.create",
        "thing_id": "t-1",
        "state": "0",
        "channels": "[a,b]",
        "content": json.dumps(
            {"port": 8883, "ratio": 0.5, "tls": True, "nothing": None, "nested": {"k": [1, 2]}}
        ),
    }
)
CTX = {"event": EVENT, "results": {"issue": {"serial": "01:02", "ttl_h": 24}}}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ event.content.port }}", 8883),
        ("{{ event.content.ratio }}", 0.5),
        ("{{ event.content.tls }}", True),
        ("{{ event.content.nothing }}", None),
        ("{{ event.channels }}", ["a", "b"]),
        ("{{ event.content.nested }}", {"k": [1, 2]}),
        ("  {{ event.state }}  ", 0),
        ("{{ results.issue.ttl_h * 2 }}", 48),
        ("port={{ event.content.port }}", "port=8883"),
        ("{{ event.thing_id }}-{{ event.state }}", "t-1-0"),
        ("no template", "no template"),
        (["{{ event.state }}", "x", {"k": "{{ event.channels | length }}"}], [0, "x", {"k": 2}]),
        ({"thing": "{{ event.thing_id }}", "n": 3, "flag": False}, {"thing": "t-1", "n": 3, "flag": False}),
        (7, 7),
    ],
)
def test_types_are_kept(template: Any, expected: Any) -> None:
    value = Template(template).render(CTX)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "template",
    ["{{ event.nope }}", "x {{ event.content.missing }} y", "{{ results.nope.serial }}", "{{ nope }}"],
)
def test_missing_fields_fail_loudly(template: str) -> None:
    with pytest.raises(ExpressionError, match=r"undefined|no attribute"):
        Template(template).render(CTX)


def test_syntax_errors_are_found_at_compile_time() -> None:
    with pytest.raises(ExpressionError, match="invalid"):
        Template("{{ event.thing_id ")
    with pytest.raises(ExpressionError, match="invalid"):
        Template("{{ event.thing_id }} {% if %}")


def test_templates_compile_once_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = rules_from(
        tmp_path,
        """
[[rule]]
name = "r"
on = ["config.create"]
[[rule.actions]]
type = "log"
message = "{{ event.thing_id }}"
""",
    )
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compiled again per event")

    monkeypatch.setattr(ImmutableSandboxedEnvironment, "compile_expression", fail)
    monkeypatch.setattr(ImmutableSandboxedEnvironment, "from_string", fail)
    action = rules.rules[0].actions[0]
    for _ in range(3):
        assert action.render(CTX).model_dump()["message"] == "t-1"


def test_a_missing_field_at_run_time_is_a_permanent_action_error(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
[[rule]]
name = "r"
on = ["config.create"]
[[rule.actions]]
type = "log"
message = "{{ event.external_id }}"
""",
    )
    with pytest.raises(PermanentError, match=r"parameter template failed.*external_id"):
        rules.rules[0].actions[0].render(CTX)


def test_a_rendered_value_of_the_wrong_type_is_a_permanent_error(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
[[rule]]
name = "r"
on = ["config.create"]
[[rule.actions]]
type = "log"
message = "{{ event.channels }}"
""",
    )
    with pytest.raises(PermanentError, match="invalid parameters after rendering: message"):
        rules.rules[0].actions[0].render(CTX)


def test_a_literal_of_the_wrong_type_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match="parameter 'level'"):
        rules_from(
            tmp_path,
            """
[[rule]]
name = "r"
on = ["config.create"]
[[rule.actions]]
type = "log"
message = "m"
level = "loud"
""",
        )


def _jinja_only(source: str) -> Expression:
    """The same expression forced through Jinja's compiled template (no path shortcut)."""
    expr = Expression(source)
    object.__setattr__(expr, "_path", None)
    return expr


@pytest.mark.parametrize(
    "source",
    [
        "event.thing_id",
        "event.content.port",
        "event.content.nested.k",
        "event.content.nothing",
        "event.channel_id",  # an id the event does not carry: undefined, not None
        "event.content.missing",
        "event.content.port.real",
        "results.issue.serial",
        "results.nope.serial",
        "nothing_here",
        "nothing_here.deeper",
        "event.stream",
        "now",
        "true",
        "None",
        "event.state == 0",
        "event.state != 1",
        "event.content.port > 8000",
        "event.content.port <= 8883",
        "event.content.ratio >= 0.5",
        "event.thing_id == 't-1'",
        "event.content.nothing == none",
        "event.channel_id == 'x'",  # undefined: an error, as in Jinja
        "event.content.missing == 1",
        "event.thing_id < 3",  # str < int: TypeError, as in Jinja
        "event.state in [0, 1]",  # not a shortcut: run by Jinja
        "event['state'] == 0",
        "1 == event.state",
        "event.state == 0 == 0",
    ],
)
def test_path_shortcut_agrees_with_jinja(source: str) -> None:
    """``a.b.c`` parameters skip the template context; value and error must be Jinja's own."""
    fast, slow = Expression(source), _jinja_only(source)
    outcomes = []
    for expr in (fast, slow):
        try:
            outcomes.append(("value", repr(expr.evaluate(CTX))))
        except ExpressionError as exc:
            outcomes.append(("error", str(exc)))
    assert outcomes[0] == outcomes[1]
    shortcut = fast._path is not None
    slow_only = {"true", "None", "event.state in [0, 1]", "event['state'] == 0", "1 == event.state"}
    assert shortcut == (source not in {*slow_only, "event.state == 0 == 0"})


def _sandbox_getattr(obj: Any, attribute: str) -> Any:
    """The sandbox's own getattr, with our one rule (an id the event lacks is undefined)."""
    value = ImmutableSandboxedEnvironment.getattr(_ENV, obj, attribute)
    if value is None and isinstance(obj, Event) and attribute in _OPTIONAL_IDS:
        return _ENV.undefined(obj=obj, name=attribute)
    return value


@pytest.mark.parametrize(
    ("obj", "attribute"),
    [
        (EVENT, "thing_id"),
        (EVENT, "channel_id"),  # None on the event: undefined
        (EVENT, "fields"),
        (EVENT, "secrets"),
        (EVENT, "content"),  # a property: the sandbox's path
        (EVENT, "state"),  # a decoded field through __getitem__
        (EVENT, "__class__"),
        ({"serial": "01"}, "serial"),
        ({"serial": "01"}, "missing"),
        ({"items": 1}, "items"),  # a dict attribute wins in Jinja: the bound method
        ({"k": 1}, "keys"),
        ({"k": 1}, "__class__"),
    ],
)
def test_getattr_shortcuts_agree_with_the_sandbox(obj: Any, attribute: str) -> None:
    fast, slow = _ENV.getattr(obj, attribute), _sandbox_getattr(obj, attribute)
    if isinstance(slow, Undefined):
        assert type(fast) is type(slow)
        assert fast._undefined_hint == slow._undefined_hint
        assert fast._undefined_name == slow._undefined_name
    else:
        assert fast == slow
