"""Hot reload: the current rule set, swapped atomically between events.

The executor asks ``RuleHolder.current()`` once per event, so an event runs start to finish on
one rule set. A reload (a change seen in the rules directory, or SIGHUP) validates the whole new
set first; an invalid set is rejected with its errors logged and the old set kept.

In the daemon a reload reads and compiles the files in a worker thread (``asyncio.to_thread``:
compiling 1,000 rules takes seconds) and only the swap runs on the event loop; reloads run one at
a time. Nothing a rule file says stops the watcher: whatever goes wrong while loading rejects the
set (``rules.reload_rejected``).
"""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from reactor.actions.base import ActionRegistry
from reactor.errors import RuleError, RuleSetError
from reactor.rules import bounds
from reactor.rules.loader import load_rules
from reactor.rules.ruleset import RuleSet

if TYPE_CHECKING:
    from reactor.settings import RulesSettings

Snapshot = tuple[tuple[str, int, int], ...]


def snapshot(directory: Path) -> Snapshot:
    """(path, mtime_ns, size) of every rule file: a change in any of them means reload."""
    if not directory.is_dir():
        return ()
    entries = []
    for path in sorted(directory.rglob("*.toml")):
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


def _load(directory: Path, registry: ActionRegistry) -> tuple[Snapshot, RuleSet | RuleSetError]:
    """The directory's snapshot and its rule set, or why there is none (never an exception)."""
    seen = snapshot(directory)
    try:
        return seen, load_rules(directory, registry)
    except RuleSetError as exc:
        return seen, exc
    except Exception as exc:  # a loader bug on hostile input must reject the set, not kill the watcher
        error = RuleError(f"cannot load: {type(exc).__name__}: {exc}", file=str(directory))
        return seen, RuleSetError([error])


class RuleHolder:
    """Holds the rule set in force and replaces it only with a valid one."""

    def __init__(
        self,
        directory: Path,
        registry: ActionRegistry,
        logger: structlog.typing.FilteringBoundLogger,
        bounds_from: RulesSettings | None = None,
    ) -> None:
        if bounds_from is not None:
            bounds.configure(bounds.Limits.from_settings(bounds_from))
        self._dir = directory
        self._registry = registry
        self._log = logger
        self._snapshot = snapshot(directory)
        self._rules = load_rules(directory, registry)
        # The first set lives long: keep it (and all else built at start) out of every garbage
        # collection pass. Only once: frozen objects are never collected, so each later set, frozen
        # too, would stay in memory for good; the first swap unfreezes the first set.
        gc.freeze()
        self._frozen = True
        self._lock = asyncio.Lock()
        self._requested: asyncio.Task[None] | None = None
        self._again = False
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
        """Load the directory again, here; swap only if every rule is valid. Returns whether it swapped."""
        return self._swap(*_load(self._dir, self._registry))

    async def reload_async(self) -> bool:
        """``reload`` with the reading and compiling in a worker thread; the swap on the loop."""
        async with self._lock:
            return self._swap(*await asyncio.to_thread(_load, self._dir, self._registry))

    def request_reload(self) -> None:
        """Reload soon, off the loop (the SIGHUP handler): requests while one runs make one more."""
        if self._requested is not None and not self._requested.done():
            self._again = True
            return
        self._requested = asyncio.get_running_loop().create_task(self._reload_requested())

    async def _reload_requested(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            await self.reload_async()

    def _swap(self, seen: Snapshot, loaded: RuleSet | RuleSetError) -> bool:
        self._snapshot = seen
        if isinstance(loaded, RuleSetError):
            self.last_error = str(loaded)
            self._log.error(
                "rules.reload_rejected",
                directory=str(self._dir),
                errors=[str(e) for e in loaded.errors],
                kept=len(self._rules),
            )
            return False
        self._rules = loaded
        if self._frozen:
            gc.unfreeze()  # the first set can now be collected (its cycles: compiled templates)
            self._frozen = False
        self.reloads += 1
        self.last_error = None
        self.last_reload_at = time.time()
        self._log.info("rules.reloaded", directory=str(self._dir), rules=len(loaded), files=len(loaded.files))
        return True

    def changed(self) -> bool:
        """Whether the directory differs from what was last loaded (or rejected)."""
        return snapshot(self._dir) != self._snapshot

    async def watch(self, stop: asyncio.Event, interval_s: float) -> None:
        """Poll the directory every ``interval_s`` and reload on change, until ``stop``."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                if await asyncio.to_thread(self.changed):
                    await self.reload_async()
