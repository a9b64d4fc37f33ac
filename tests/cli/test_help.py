"""Every verb and option explains itself: a walk of the whole parser, --help of each verb, --version."""

from __future__ import annotations

import argparse

import pytest

from reactor.cli import main
from reactor.cliargs import EXIT_CODES, build_parser, package_version


def _verbs(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path below ``parser`` (``("dlq", "list")``, ...), ``parser``'s own first."""
    found = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _verbs(child, (*path, name))
    return found


def _parser_of(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def missing_help(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[str]:
    """``reactor dlq list --rule`` for each argument, below ``parser``, that has no help text."""
    missing = []
    for action in parser._actions:
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
            name = "/".join(action.option_strings) or action.metavar or action.dest
            missing.append(" ".join(("reactor", *path, str(name))))
        if isinstance(action, argparse._SubParsersAction):
            for verb, child in action.choices.items():
                missing += missing_help(child, (*path, verb))
    return missing


def test_every_option_of_every_verb_has_help() -> None:
    assert missing_help(build_parser()) == []


def test_the_walk_finds_an_option_without_help() -> None:
    parser = argparse.ArgumentParser(prog="reactor")
    sub = parser.add_subparsers(dest="command", help="verbs")
    sub.add_parser("dlq", help="x").add_argument("--group")
    assert missing_help(parser) == ["reactor dlq --group"]


def test_the_walk_covers_every_verb() -> None:
    verbs = {" ".join(p) for p in _verbs(build_parser())}
    assert {
        "run",
        "doctor",
        "status",
        "history",
        "dlq list",
        "dlq show",
        "rules test",
        "certs inspect",
    } <= verbs
    assert len(verbs) >= 20


@pytest.mark.parametrize("path", _verbs(build_parser()), ids=lambda p: " ".join(p) or "reactor")
def test_help_of_each_verb(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: reactor")
    assert EXIT_CODES in text  # the exit codes, the same words on every verb
    for action in _parser_of(path)._actions:
        for option in action.option_strings:
            assert option in text


@pytest.mark.parametrize(
    "path", [("run",), ("status",), ("doctor",), ("dlq",), ("rules", "test"), ("certs", "inspect")]
)
def test_main_verbs_show_examples(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*path, "--help"])
    text = capsys.readouterr().out
    assert "examples:\n  reactor " in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"reactor {package_version()}"
    assert package_version()[0].isdigit()


def test_a_usage_error_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["dlq", "list", "--bogus"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
