"""The one retry policy, over tenacity: exponential backoff with jitter, bounded by attempts and
total time, retrying only ``RetryableError`` (transport errors, timeouts, 429, 5xx) and waiting at
least the server's ``Retry-After`` when it gave one. ``PermanentError`` is never retried, nor an
``AmbiguousError`` (the request may have reached the server) of a call that is not repeatable.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_base,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from reactor.errors import ActionError, AmbiguousError, RetryableError
from reactor.rules.model import RetrySpec
from reactor.settings import RetrySettings

T = TypeVar("T")

_RETRY_ANY: retry_base = retry_if_exception_type(RetryableError)
_RETRY_UNAMBIGUOUS: retry_base = _RETRY_ANY & retry_if_not_exception_type(AmbiguousError)


def worth_retrying(exc: ActionError, repeatable: bool) -> bool:
    """A transient failure, and not one after which the server may have acted on a call that
    cannot tell a repeat."""
    return isinstance(exc, RetryableError) and (repeatable or not isinstance(exc, AmbiguousError))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently an action is retried."""

    attempts: int = 5
    initial_s: float = 0.2
    max_wait_s: float = 10.0
    max_total_s: float = 60.0
    jitter_s: float = 0.5

    @classmethod
    def from_settings(cls, settings: RetrySettings) -> RetryPolicy:
        return cls(**settings.model_dump())

    def overridden(self, spec: RetrySpec | None) -> RetryPolicy:
        """This policy with a rule's ``retry`` table applied over it."""
        if spec is None:
            return self
        return replace(self, **{k: v for k, v in spec.model_dump().items() if v is not None})

    def _wait(self) -> Callable[[RetryCallState], float]:
        backoff = wait_exponential_jitter(
            multiplier=self.initial_s, max=self.max_wait_s, jitter=self.jitter_s
        )

        def wait(state: RetryCallState) -> float:
            delay = backoff(state)
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, ActionError) and exc.retry_after_s:
                delay = max(delay, exc.retry_after_s)
            return delay

        return wait

    async def call(self, fn: Callable[[], Awaitable[T]], *, repeatable: bool = True) -> tuple[T, int]:
        """Run ``fn`` under the policy; return its result and the attempts it took.

        ``repeatable``: whether ``fn`` may run again after an ``AmbiguousError``. On failure for
        good the last ``ActionError`` is raised with ``attempts`` set. The first attempt runs
        directly: tenacity's machinery is only set up once a retry is due, which keeps the
        per-event path lean (it dominated the profile when set up for every call).
        """
        started = time.monotonic()
        try:
            return await fn(), 1
        except ActionError as exc:
            if self.attempts <= 1 or not worth_retrying(exc, repeatable):
                exc.attempts = 1
                raise
            first = exc
        return await self._retry(fn, first, time.monotonic() - started, repeatable)

    async def _retry(
        self, fn: Callable[[], Awaitable[T]], first: ActionError, spent_s: float, repeatable: bool
    ) -> tuple[T, int]:
        """Attempts 2..N under tenacity; attempt 1 (already made) is replayed as its failure."""
        replayed = False

        async def attempt() -> T:
            nonlocal replayed
            if not replayed:
                replayed = True
                raise first
            return await fn()

        retrying = AsyncRetrying(
            retry=_RETRY_ANY if repeatable else _RETRY_UNAMBIGUOUS,
            stop=stop_after_attempt(self.attempts) | stop_before_delay(max(self.max_total_s - spent_s, 0.0)),
            wait=self._wait(),
            reraise=True,
        )
        try:
            result: T = await retrying(attempt)
        except ActionError as exc:
            exc.attempts = retrying.statistics.get("attempt_number", 1)
            raise
        return result, retrying.statistics.get("attempt_number", 1)
