"""Every kind of load error names the file, the line and the rule; a broken set yields no rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from reactor.errors import RuleSetError
from reactor.rules.loader import load_rules
from tests.rules.helpers import registry, rules_from

GOOD = """
[[rule]]
name = "good"
on = ["config.create"]

[[rule.actions]]
type = "log"
message = "ok"
"""


def _errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(RuleSetError) as info:
        rules_from(tmp_path, GOOD + text)
    return [str(e) for e in info.value.errors]


def _one(tmp_path: Path, text: str) -> str:
    errors = _errors(tmp_path, text)
    assert len(errors) == 1, errors
    return errors[0]


def test_unknown_rule_key(tmp_path: Path) -> None:
    error = _one(
        tmp_path, '\n[[rule]]\nname = "r2"\non = ["x"]\ncolour = "red"\n[[rule.actions]]\ntype = "noop"\n'
    )
    assert error.startswith(f"{tmp_path}/rules/r.toml:10: rule 'r2': colour: unknown key")


def test_unknown_action_type(tmp_path: Path) -> None:
    error = _one(tmp_path, '\n[[rule]]\nname = "r2"\non = ["x"]\n\n[[rule.actions]]\ntype = "launch"\n')
    assert "r.toml:14: rule 'r2': actions[0]: unknown action type 'launch'" in error
    assert "known: " in error


def test_missing_action_parameter_and_line_of_the_action(tmp_path: Path) -> None:
    text = '\n[[rule]]\nname = "r2"\non = ["x"]\n[[rule.actions]]\ntype = "noop"\n[[rule.actions]]\ntype = "log"\n'
    error = _one(tmp_path, text)
    assert "r.toml:15: rule 'r2': actions[1]: log: missing parameter(s) message" in error


def test_unknown_action_parameter(tmp_path: Path) -> None:
    error = _one(
        tmp_path,
        '\n[[rule]]\nname = "r2"\non = ["x"]\n[[rule.actions]]\ntype = "log"\nmessage = "m"\nurl = 1\n',
    )
    assert "rule 'r2': actions[0]: log: unknown parameter(s) url" in error


def test_missing_type(tmp_path: Path) -> None:
    error = _one(tmp_path, '\n[[rule]]\nname = "r2"\non = ["x"]\n[[rule.actions]]\nmessage = "m"\n')
    assert "rule 'r2': actions[0]: missing 'type'" in error


def test_bad_expression(tmp_path: Path) -> None:
    error = _one(
        tmp_path,
        '\n[[rule]]\nname = "r2"\non = ["x"]\nwhen = ["event.state =="]\n[[rule.actions]]\ntype = "noop"\n',
    )
    assert "r.toml:10: rule 'r2': when: invalid expression 'event.state =='" in error


def test_bad_template(tmp_path: Path) -> None:
    error = _one(
        tmp_path, '\n[[rule]]\nname = "r2"\non = ["x"]\n[[rule.actions]]\ntype = "log"\nmessage = "{{ x"\n'
    )
    assert "rule 'r2': actions[0]: invalid" in error


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.toml").write_text(GOOD)
    with pytest.raises(RuleSetError) as info:
        rules_from(tmp_path, GOOD, name="b.toml")
    (error,) = info.value.errors
    assert str(error).startswith(f"{tmp_path}/rules/b.toml:2: rule 'good': duplicate rule name (first at ")
    assert "a.toml:2" in str(error)


def test_duplicate_action_ids(tmp_path: Path) -> None:
    text = '\n[[rule]]\nname = "r2"\non = ["x"]\n[[rule.actions]]\ntype = "noop"\nid = "a"\n[[rule.actions]]\ntype = "noop"\nid = "a"\n'
    assert "rule 'r2': actions: duplicate action id 'a'" in _one(tmp_path, text)


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    error = _one(tmp_path, '\n[[rule]]\nname = "r2\n')
    assert error.startswith(f"{tmp_path}/rules/r.toml:11: invalid TOML")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('\n[[rule]]\nname = "r2"\n[[rule.actions]]\ntype = "noop"\n', "on: Field required"),
        (
            '\n[[rule]]\nname = "r2"\non = []\n[[rule.actions]]\ntype = "noop"\n',
            "on: List should have at least 1",
        ),
        ('\n[[rule]]\nname = "r2"\non = ["x"]\n', "actions: Field required"),
        (
            '\n[[rule]]\nname = "bad name"\non = ["x"]\n[[rule.actions]]\ntype = "noop"\n',
            "name: String should match",
        ),
        (
            '\n[[rule]]\nname = "r2"\non = ["x"]\nretry = { attempts = 0 }\n[[rule.actions]]\ntype = "noop"\n',
            "retry.attempts",
        ),
    ],
)
def test_schema_errors(tmp_path: Path, text: str, message: str) -> None:
    assert message in "\n".join(_errors(tmp_path, text))


def test_unknown_top_level_key(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match="unknown top-level key 'extra'"):
        rules_from(tmp_path, "extra = 1\n" + GOOD)


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    text = '\n[[rule]]\nname = "a"\non = ["x"]\n[[rule.actions]]\ntype = "zap"\n\n[[rule]]\nname = "b"\non = ["x"]\nwhen = ["(("]\n[[rule.actions]]\ntype = "noop"\n'
    errors = _errors(tmp_path, text)
    assert len(errors) == 2
    assert "rule 'a'" in errors[0]
    assert "rule 'b'" in errors[1]


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match="rules directory not found"):
        load_rules(tmp_path / "nowhere", registry())


def test_disabled_rules_are_validated_but_never_match(tmp_path: Path) -> None:
    rules = rules_from(tmp_path, GOOD.replace('name = "good"', 'name = "good"\nenabled = false'))
    assert len(rules) == 1
    assert rules.rules[0].on == ()
    with pytest.raises(RuleSetError, match="unknown action type"):
        rules_from(
            tmp_path, '[[rule]]\nname = "x"\nenabled = false\non = ["a"]\n[[rule.actions]]\ntype = "zap"\n'
        )


EVERYTHING_WRONG = """
[[rule]]
name = "r2"
on = ["x"]
colour = "red"
when = ["event.state ==", "event.ok", { any = ["(((", { not = "event.x is matching('(?<=a)')" }] }]

[[rule.actions]]
type = "zap"

[[rule.actions]]
type = "log"
url = 1

[[rule.actions]]
type = "log"
message = "{{ x"

[[rule.on_failure]]
type = "noop"
id = "f"
[[rule.on_failure]]
type = "noop"
id = "f"
"""


def test_every_error_of_a_rule_is_reported_not_the_first(tmp_path: Path) -> None:
    errors = _errors(tmp_path, EVERYTHING_WRONG)
    where = f"{tmp_path}/rules/r.toml"
    expected = [
        f"{where}:10: rule 'r2': colour: unknown key",
        f"{where}:10: rule 'r2': when: invalid expression 'event.state =='",
        f"{where}:10: rule 'r2': when: invalid expression '((('",
        f"{where}:10: rule 'r2': when: \"event.x is matching('(?<=a)')\": invalid regex",
        f"{where}:16: rule 'r2': actions[0]: unknown action type 'zap'",
        f"{where}:19: rule 'r2': actions[1]: log: unknown parameter(s) url",
        f"{where}:19: rule 'r2': actions[1]: log: missing parameter(s) message",
        f"{where}:23: rule 'r2': actions[2]: invalid template '{{{{ x'",
        f"{where}:10: rule 'r2': on_failure: duplicate action id 'f'",
    ]
    assert len(errors) == len(expected), "\n".join(errors)
    for error, start in zip(errors, expected, strict=True):
        assert error.startswith(start), (error, start)
