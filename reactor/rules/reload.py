"""Hot reload: the current rule set, swapped atomically between events.

The executor asks ``RuleHolder.current()`` once per event, so an event runs start to finish on
one rule set. A reload (a change seen in the rules directory, or SIGHUP) validates the whole new
set first; an invalid set is rejected with its errors logged and the old set kept.
"""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import structlog

from reactor.actions.base import ActionRegistry
from reactor.errors import RuleSetError
from reactor.rules.loader import load_rules
from reactor.rules.ruleset import RuleSet

Snapshot = tuple[tuple[str, int, int], ...]


def snapshot(directory: Path) -> Snapshot:
    """(path, mtime_ns, size) of every rule file: a change in any of them means reload."""
    entries = []
    for path in sorted(directory.rglob("*.toml")):
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


class RuleHolder:
    """Holds the rule set in force and replaces it only with a valid one."""

    def __init__(
        self,
        directory: Path,
        registry: ActionRegistry,
        logger: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self._dir = directory
        self._registry = registry
        self._log = logger
        self._snapshot = snapshot(directory) if directory.is_dir() else ()
        self._rules = load_rules(directory, registry)
        gc.freeze()  # compiled rules live long: keep them out of every garbage collection pass
        self.reloads = 0
        self.last_error: str | None = None
        self.last_reload_at = time.time()

    def current(self) -> RuleSet:
        return self._rules

    @property
    def loaded(self) -> bool:
        """A valid rule set is in force (always, once built: an invalid one never replaces it)."""
        return self._rules is not None

    def reload(self) -> bool:
        """Load the directory again; swap only if every rule is valid. Returns whether it swapped."""
        self._snapshot = snapshot(self._dir) if self._dir.is_dir() else ()
        try:
            rules = load_rules(self._dir, self._registry)
        except RuleSetError as exc:
            self.last_error = str(exc)
            self._log.error(
                "rules.reload_rejected",
                directory=str(self._dir),
                errors=[str(e) for e in exc.errors],
                kept=len(self._rules),
            )
            return False
        self._rules = rules
        gc.freeze()
        self.reloads += 1
        self.last_error = None
        self.last_reload_at = time.time()
        self._log.info("rules.reloaded", directory=str(self._dir), rules=len(rules), files=len(rules.files))
        return True

    def changed(self) -> bool:
        """Whether the directory differs from what was last loaded (or rejected)."""
        return (snapshot(self._dir) if self._dir.is_dir() else ()) != self._snapshot

    async def watch(self, stop: asyncio.Event, interval_s: float) -> None:
        """Poll the directory every ``interval_s`` and reload on change, until ``stop``."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                if self.changed():
                    self.reload()
