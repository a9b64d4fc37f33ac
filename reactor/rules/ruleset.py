"""A loaded set of rules, indexed so that matching costs what the candidate rules cost.

Candidates for an event are the rules whose ``on`` globs match its canonical or raw operation
and whose ``streams`` globs (if any) match its stream; a read operation (``*.view``, ``*.list``)
only by a rule naming it exactly. SuperMQ has a small, closed set of
(operation, stream) pairs, so the candidates of each pair are computed once by scanning the
rules and then served from a dict: the rules that cannot match an operation cost nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from reactor.events.catalogue import canonical_operation
from reactor.events.echoes import is_read
from reactor.events.model import Event
from reactor.rules.bounds import BoundExceeded, Section
from reactor.rules.model import Rule

_CACHE_LIMIT = 65_536


def _matches_any(patterns: tuple[str, ...], *names: str) -> bool:
    return any(fnmatchcase(n, p) for p in patterns for n in names)


def _listens_to(patterns: tuple[str, ...], *names: str) -> bool:
    """``on`` patterns against an operation's names: a read operation (``config.list``) is
    matched only when named exactly, never by a glob (the loop guard, reactor/events/echoes.py)."""
    if is_read(names[0]):
        return any(p in names for p in patterns)
    return _matches_any(patterns, *names)


@dataclass(frozen=True)
class Explanation:
    """Why a rule did or did not match an event (for the dry run)."""

    rule: Rule
    candidate: bool
    reason: str | None


@dataclass
class RuleSet:
    """Rules in load order (file path, then position in the file)."""

    rules: tuple[Rule, ...]
    files: tuple[str, ...] = ()
    _cache: dict[tuple[str, str, str], tuple[Rule, ...]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.rules)

    def candidates(self, event: Event) -> tuple[Rule, ...]:
        """Rules listening to this event's operation and stream (before conditions)."""
        key = (event.operation, event.raw_operation, event.stream)
        found = self._cache.get(key)
        if found is None:
            found = tuple(r for r in self.rules if self._listens(r, event))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return found

    @staticmethod
    def _listens(rule: Rule, event: Event) -> bool:
        # The published name counts too (``bootstrap.thing.bootstrap``), unless the event's
        # content changed its meaning (``thing.remove`` with status enabled is an enable).
        same = canonical_operation(event.raw_operation, event.service) == event.operation
        names = (event.operation, event.raw_operation) if same else (event.operation,)
        if not _listens_to(rule.on, *names):
            return False
        return not rule.streams or _matches_any(rule.streams, event.stream)

    def match(self, event: Event, ctx: Mapping[str, Any]) -> list[Rule]:
        """The rules whose conditions hold for the event (``BoundExceeded`` if one went past a bound)."""
        matched, exceeded = self.select(event, ctx)
        if exceeded is not None:
            raise BoundExceeded(exceeded[1])
        return matched

    def select(self, event: Event, ctx: Mapping[str, Any]) -> tuple[list[Rule], tuple[Rule, str] | None]:
        """The rules whose conditions hold, and the rule whose conditions went past the evaluation
        bounds, with the reason (the event fails: the rules after that one are not evaluated)."""
        matched = []
        with Section():  # the event's evaluation clock runs
            for rule in self.candidates(event):
                try:
                    if rule.failure(ctx) is None:
                        matched.append(rule)
                except BoundExceeded as exc:
                    return matched, (rule, str(exc))
        return matched, None

    def explain(self, event: Event, ctx: Mapping[str, Any]) -> list[Explanation]:
        """An explanation for every rule: not listening, condition failed (and why), or matched."""
        listening = set(map(id, self.candidates(event)))
        with Section():
            return [self._explain(rule, id(rule) in listening, ctx) for rule in self.rules]

    @staticmethod
    def _explain(rule: Rule, listening: bool, ctx: Mapping[str, Any]) -> Explanation:
        if listening:
            return Explanation(rule, candidate=True, reason=_failure(rule, ctx))
        reason = (
            "disabled"
            if not rule.on
            else f"listens to {list(rule.on)}" + (f" on streams {list(rule.streams)}" if rule.streams else "")
        )
        return Explanation(rule, candidate=False, reason=reason)


def _failure(rule: Rule, ctx: Mapping[str, Any]) -> str | None:
    try:
        return rule.failure(ctx)
    except BoundExceeded as exc:
        return f"FAILS the event: went past an evaluation bound: {exc}"
