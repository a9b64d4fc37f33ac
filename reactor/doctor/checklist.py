"""The doctor's checklist: one ``Check`` per line, the fix for a failure, text or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from rich.markup import escape

from reactor.ops.console import console

#: Per check: no answer within this long is a failure (doctor never hangs on a dead server).
TIMEOUT_S = 5.0


@dataclass
class Check:
    """One line of the checklist; ``fix`` says what to do when it failed."""

    section: str
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""


class Checklist:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, section: str, name: str, ok: bool, detail: str = "", fix: str = "") -> bool:
        self.checks.append(Check(section, name, ok, detail, "" if ok else fix))
        return ok


def safe_url(url: str) -> str:
    """``url`` without the password in it (``redis://:***@host``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def print_checks(checks: list[Check], out: TextIO, *, as_json: bool = False) -> int:
    """The checklist (or JSON); 0 when every check passed, else 1."""
    failed = sum(not c.ok for c in checks)
    if as_json:
        document: dict[str, Any] = {"ok": not failed, "checks": [asdict(c) for c in checks]}
        print(json.dumps(document, indent=2), file=out)
        return 1 if failed else 0
    shown = console(out)
    section = ""
    for c in checks:
        if c.section != section:
            section = c.section
            shown.print(section, style="bold")
        mark = "[green]ok  [/]" if c.ok else "[bold red]FAIL[/]"
        shown.print(
            f"  [{mark}] {escape(c.name)}" + (f": {escape(c.detail)}" if c.detail else ""), soft_wrap=True
        )
        if c.fix:
            shown.print(f"         [yellow]fix:[/] {escape(c.fix)}", soft_wrap=True)
    shown.print(f"\n{len(checks) - failed} of {len(checks)} check(s) passed", soft_wrap=True)
    return 1 if failed else 0
