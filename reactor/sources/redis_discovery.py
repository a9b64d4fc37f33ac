"""Which Redis streams ``redis.streams`` names: literal keys, and glob patterns found by SCAN.

SuperMQ at HEAD publishes each operation to its own stream (``events.supermq.client.create``,
``events.magistrala.bootstrap.config.create``, ...) and Redis has no wildcard subscription, so
a pattern such as ``events.magistrala.bootstrap.*`` is resolved here: ``SCAN MATCH <pattern>
TYPE stream COUNT <scan_count>``, repeated every ``discover_interval_s``. Bounds: at most
``max_streams`` streams in all (literal ones count); beyond it no more are joined and the
refusal is reported once per pattern pass. The dead-letter stream and the reactor's own keys
(``reactor:``..., its audit trail among them) are never a match, whatever the pattern (the
reactor would consume what it writes).

A name is a pattern when it holds a glob character (``*``, ``?``, ``[``): Redis's MATCH syntax.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

GLOB_CHARS = frozenset("*?[")
#: The reactor's own keys (leases, the audit trail ``reactor:<group>:audit``): never consumed.
OWN_PREFIX = "reactor:"


def is_pattern(name: str) -> bool:
    """Whether ``name`` is a glob pattern (Redis MATCH syntax) rather than a stream key."""
    return not GLOB_CHARS.isdisjoint(name)


@dataclass
class StreamDiscovery:
    """The configured names split into literal streams and patterns, and the streams found."""

    names: Iterable[str]
    exclude: frozenset[str]
    max_streams: int
    scan_count: int
    literal: list[str] = field(init=False)
    patterns: list[str] = field(init=False)
    #: stream → the pattern that found it (insertion order: the order they were joined).
    found: dict[str, str] = field(init=False, default_factory=dict)
    #: Patterns whose matches were cut at ``max_streams`` in the last pass.
    truncated: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        names = list(dict.fromkeys(self.names))
        self.literal = [n for n in names if not is_pattern(n)]
        self.patterns = [n for n in names if is_pattern(n)]

    @property
    def streams(self) -> list[str]:
        """Every stream consumed: the literal ones, then the found ones in the order found."""
        return [*self.literal, *self.found]

    async def scan(self, client: Any) -> list[str]:
        """One pass over the keyspace per pattern: the matching streams not known before (joined
        to ``found``), bounded by ``max_streams``. Redis errors propagate (the caller translates)."""
        new: list[str] = []
        self.truncated.clear()
        known = set(self.literal) | set(self.found) | self.exclude
        for pattern in self.patterns:
            async for key in client.scan_iter(match=pattern, count=self.scan_count, _type="STREAM"):
                name = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else str(key)
                if name in known or name.startswith(OWN_PREFIX):
                    continue
                if len(self.literal) + len(self.found) >= self.max_streams:
                    self.truncated.add(pattern)
                    break
                known.add(name)
                self.found[name] = pattern
                new.append(name)
        return new
