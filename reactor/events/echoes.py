"""The loop guard: events the reactor's own API calls make the platform publish.

SuperMQ publishes an event for every operation, reads included: a config view publishes
``config.list`` (Mainflux) or ``config.view`` (Magistrala), the device fetch the reactor uses to
read certificates publishes ``thing.bootstrap``, an update publishes ``config.update``. A rule
that reacts to one of those and calls the API again would feed itself.

Two guards, both on by default:

1. Read operations (``*.view``, ``*.list``, ``*.list_by_*``, ``*.view_*``, ``*.identify``,
   ``*.authorize``) are matched only by a rule that names them exactly: a glob like
   ``config.*`` never matches them. This holds across processes.
2. Echoes: before each call the client notes the event it will cause: operation and device id
   (from the profile's ``Endpoint.echo``) and the values the call sets (the content it writes,
   the state, the channels). The first event that arrives within ``ttl_s`` with that operation,
   device and those values is the reactor's own, and only rules with ``own_events = true`` see
   it; an operator's change with other values is never taken for one. This guard is per process:
   an echo consumed by another process of the same group is an ordinary event there (guard 1
   still applies).

Memory is bounded: at most ``capacity`` devices and ``per_key`` expectations each are held, the
oldest dropped first. ``ttl_s`` counts from the call to the event's processing, so it covers a
backlog of that long.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from reactor.events.normalise import normalise_fields

_READ_ACTIONS = frozenset({"view", "list", "identify", "authorize"})


def is_read(operation: str) -> bool:
    """An operation that reads and changes nothing (``config.list``, ``thing.view_perms``)."""
    action = operation.rpartition(".")[2]
    return action in _READ_ACTIONS or action.startswith(("view_", "list_"))


class Board(Protocol):
    """Expectations shared with other processes (``reactor.delivery.echo_board``)."""

    async def post(self, operation: str, device: str) -> None: ...

    async def take(self, operation: str, device: str) -> bool: ...

    async def close(self) -> None: ...


class Echoes:
    """Expected echoes of the reactor's own calls: ``expect`` before a call, ``take`` per event."""

    __slots__ = ("_capacity", "_pending", "_per_key", "_ttl_ns", "board", "shared")

    def __init__(
        self,
        ttl_s: float = 300.0,
        capacity: int = 10_000,
        per_key: int = 64,
        board: Board | None = None,
        shared: frozenset[str] = frozenset(),
    ) -> None:
        #: Where the expectations of the ``shared`` operations also go, for other processes.
        self.board = board
        self.shared = shared
        self._ttl_ns = int(ttl_s * 1e9)
        self._capacity = capacity
        self._per_key = per_key
        self._pending: OrderedDict[tuple[str, str], list[_Slot]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def expect(
        self, operation: str, device: str, count: int = 1, fields: Mapping[str, Any] | None = None
    ) -> None:
        """The next ``count`` events ``operation`` about ``device`` carrying ``fields`` (as the
        call sends them; decoded as events are) will be the reactor's own."""
        if not operation or count <= 0:
            return
        key = (operation, device)
        slot = (time.monotonic_ns() + self._ttl_ns, normalise_fields(dict(fields)) if fields else {})
        slots = self._pending.pop(key, [])
        slots.extend([slot] * count)
        del slots[: -self._per_key]
        self._pending[key] = slots
        while len(self._pending) > self._capacity:
            self._pending.popitem(last=False)

    def withdraw(
        self, operation: str, device: str, count: int = 1, fields: Mapping[str, Any] | None = None
    ) -> None:
        """The call failed with an answer: the platform published nothing for it (the newest
        ``count`` expectations with these values go; another call's stay)."""
        key = (operation, device)
        slots = self._pending.get(key)
        if not slots:
            return
        want = normalise_fields(dict(fields)) if fields else {}
        for _ in range(count):
            newest = next((i for i in range(len(slots) - 1, -1, -1) if slots[i][1] == want), None)
            if newest is None:
                break
            del slots[newest]
        if not slots:
            del self._pending[key]

    async def close(self) -> None:
        if self.board is not None:
            await self.board.close()

    async def share(self, operation: str, device: str) -> None:
        """Post the expectation for other processes too, when the operation is a shared one."""
        if self.board is not None and operation in self.shared:
            await self.board.post(operation, device)

    async def unshare(self, operation: str, device: str) -> None:
        """The call failed with an answer: take back what ``share`` posted."""
        if self.board is not None and operation in self.shared:
            await self.board.take(operation, device)

    def shares(self, operation: str) -> bool:
        """Whether events of ``operation`` may be another process's echoes (device reads)."""
        return self.board is not None and operation in self.shared

    async def take_shared(self, operation: str, device: str | None, taken_here: bool) -> bool:
        """For a shared operation, after ``take``: ours is taken off the board too (it is not
        another process's); else the board says whether another process expected it."""
        assert self.board is not None
        taken_there = await self.board.take(operation, device or "")
        return taken_here or taken_there

    def take(self, operation: str, device: str | None, fields: Mapping[str, Any]) -> bool:
        """Whether this event is an expected echo (and, if so, consume the expectation)."""
        if not self._pending:
            return False
        key = (operation, device or "")
        slots = self._pending.get(key)
        if not slots:
            return False
        now = time.monotonic_ns()
        slots[:] = [s for s in slots if s[0] >= now]
        found = next((i for i, (_, want) in enumerate(slots) if _carries(fields, want)), None)
        if found is not None:
            del slots[found]
        if not slots:
            del self._pending[key]
        return found is not None


_Slot = tuple[int, dict[str, Any]]


def _same(have: Any, want: Any) -> bool:
    if isinstance(have, list) and isinstance(want, list):  # channel lists: order is not kept
        return sorted(map(str, have)) == sorted(map(str, want))
    return bool(have == want)


def _carries(fields: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    return all(k in fields and _same(fields[k], v) for k, v in want.items())
