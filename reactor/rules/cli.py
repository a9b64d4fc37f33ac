"""``reactor rules ...``: offline work on rule files."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from reactor.app import build_registry
from reactor.errors import RuleSetError
from reactor.ops.logging import get_logger
from reactor.rules.loader import load_rules


def check_command(directory: Path, out: TextIO) -> int:
    """Validate every rule file; print each error with file:line and rule; exit 1 on any."""
    try:
        rules = load_rules(directory, build_registry(get_logger()))
    except RuleSetError as exc:
        for err in exc.errors:
            print(f"error: {err}", file=out)
        print(f"{len(exc.errors)} error(s) in {directory}", file=out)
        return 1
    print(f"ok: {len(rules)} rule(s) in {len(rules.files)} file(s) under {directory}", file=out)
    return 0
