"""What an action is: a parameter model validated at rule load, and an async ``run``.

An action never raises a bare library error: it raises ``RetryableError`` or ``PermanentError``
(``reactor.errors``), or returns a result that the rule's next actions can use as
``results.<action id>``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from reactor.events.model import Event


class Params(BaseModel):
    """Base of every action's parameters: unknown parameters are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What an action knows about where it runs."""

    event: Event
    rule: str
    action_id: str
    results: Mapping[str, Any]
    #: The event was delivered before (crash, reclaim, replay): an action may check before it writes.
    redelivered: bool = False


class Action(ABC):
    """One kind of action, registered under ``type_name``."""

    type_name: ClassVar[str]
    params_model: ClassVar[type[Params]]
    #: Parameters whose values are secrets: masked in dry runs, logs and the audit trail.
    secret_params: ClassVar[frozenset[str]] = frozenset()
    #: Whether completing it changes the world (recorded so a redelivery does not repeat it).
    has_effect: ClassVar[bool] = True
    #: Whether running it twice is harmless, so an ambiguous failure (``AmbiguousError``: the
    #: request may have reached the server) may be retried. False for calls whose target cannot
    #: tell a repeat: the step then fails as ``ambiguous`` instead of sending it again.
    repeatable: ClassVar[bool] = True
    #: Whether it does nothing and cannot fail (``noop``): a rule of such actions with static
    #: parameters is done where the event is dispatched, its steps recorded without running them.
    inert: ClassVar[bool] = False

    def may_repeat(self, params: Any) -> bool:
        """Whether these parameters may be sent again after an ambiguous failure."""
        return self.repeatable

    def check_params(self, raw: Mapping[str, Any]) -> list[str]:
        """Problems visible in the parameters as written (templates unrendered), for rule load:
        what the parameter model cannot see while a value is still a template (e.g. the static
        names of a header table whose values are templated). None by default."""
        return []

    def refused(self, params: Mapping[str, Any]) -> str:
        """Why the platform cannot do this with these (raw) parameters, checked when the rule
        loads: what the SuperMQ API profile in use lacks ("" when nothing, or not known yet)."""
        return ""

    @abstractmethod
    async def run(self, params: Any, ctx: ActionContext) -> Any:
        """Do the work; return a JSON-serialisable result or None."""


class ActionRegistry:
    """The action types rules may name."""

    __slots__ = ("_actions",)

    def __init__(self, actions: Iterable[Action]) -> None:
        self._actions = {a.type_name: a for a in actions}

    def get(self, type_name: str) -> Action | None:
        return self._actions.get(type_name)

    def names(self) -> list[str]:
        return sorted(self._actions)
