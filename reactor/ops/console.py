"""Output for people: progress bars and styled lines through rich on a terminal, plain text
(no escape codes, no carriage returns) when the output is a file or a pipe."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

#: ``show(done, total)``: called as work advances; the last call has ``done >= total``.
Progress = Callable[[int, int], None]


def is_terminal(out: TextIO) -> bool:
    """Whether ``out`` is a terminal that takes escape codes (not a pipe, a file, TERM=dumb)."""
    isatty = getattr(out, "isatty", None)
    return bool(isatty is not None and isatty()) and os.environ.get("TERM", "") != "dumb"


def console(out: TextIO) -> Console:
    """A rich console on ``out``: styled on a terminal, plain elsewhere (NO_COLOR is honoured)."""
    terminal = is_terminal(out)
    return Console(file=out, force_terminal=terminal, no_color=not terminal or None, highlight=False)


def progress(what: str, out: TextIO | None = None) -> Progress:
    """A progress bar for ``what`` on a terminal; elsewhere one plain line when the work is done."""
    out = out or sys.stderr
    if not is_terminal(out):

        def plain(done: int, total: int) -> None:
            if done >= total:
                print(f"{what}: {done}/{total}", file=out, flush=True)

        return plain
    bar = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(out),
        auto_refresh=False,  # drawn on each step: no thread of its own
        redirect_stdout=False,
        redirect_stderr=False,
    )
    task: list[TaskID] = []

    def show(done: int, total: int) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(what, total=total))
        bar.update(task[0], completed=done, total=total, refresh=True)
        if done >= total:
            bar.stop()

    return show


def table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[object]], *, title: str = "") -> None:
    """A table on a terminal (columns sized to fit, cells as text: no markup read from them)."""
    shown = Table(*headers, title=title or None, title_justify="left", header_style="bold")
    for row in rows:
        shown.add_row(*(Text(str(cell)) for cell in row))
    console(out).print(shown)
