"""The reactor's error taxonomy: every failure the reactor reports is one of these.

Library errors (redis, httpx, jinja2, tomllib, pydantic) are translated into this tree at the
boundary where they occur, with ``raise ... from exc``, so that callers decide on the kind of
failure and never on a library's type::

    ReactorError
    ├── ConfigError            settings that cannot be used (names the key)
    ├── RuleError              a rule file or rule that cannot be loaded (names file, line, rule)
    ├── DecodeError            an event that cannot be turned into an Event (names stream, entry id)
    ├── SourceError            the event store failed (connection lost, command refused)
    ├── StateStoreError        the state store of completed steps did not answer
    └── ActionError            an action that did not complete (names rule and action)
        ├── RetryableError     transient: transport error, timeout, 429, 5xx
        │   └── AmbiguousError the request may have reached the server (no answer, connection
        │                      lost after sending): repeated only by an action that may repeat
        ├── PermanentError     retrying will not help: 4xx, bad parameters, missing field
        └── SuspendedError     not the event's fault: SuperMQ does not take the reactor's login
                               (the breaker is open); the event waits, it is not dead-lettered
"""

from __future__ import annotations


class ReactorError(Exception):
    """Base of every error the reactor raises on purpose."""


class ConfigError(ReactorError):
    """Settings that cannot be used; the message names the offending key."""


class RuleError(ReactorError):
    """A rule that cannot be loaded; carries the file, line and rule name where known."""

    def __init__(self, message: str, *, file: str = "", line: int | None = None, rule: str = "") -> None:
        self.file = file
        self.line = line
        self.rule = rule
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.file
        if where and self.line is not None:
            where = f"{where}:{self.line}"
        parts = [p for p in (where, f"rule {self.rule!r}" if self.rule else "") if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.detail}" if prefix else self.detail


class DecodeError(ReactorError):
    """An event that cannot be decoded; carries where it came from."""

    def __init__(self, message: str, *, stream: str = "", entry_id: str = "") -> None:
        self.stream = stream
        self.entry_id = entry_id
        self.detail = message
        where = f"{stream} {entry_id}".strip()
        super().__init__(f"{where}: {message}" if where else message)


class SourceError(ReactorError):
    """The event store failed: a connection lost or a command refused."""


class StateStoreError(ReactorError):
    """The state store of completed steps did not answer (after its own retries, or on stop)."""


class ActionError(ReactorError):
    """An action that did not complete.

    ``status`` is the HTTP status where one was involved; ``attempts`` is filled in by the
    retry policy once it gives up.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.status = status
        self.retry_after_s = retry_after_s
        self.attempts = 1
        super().__init__(message)


class RetryableError(ActionError):
    """Transient: a transport error, a timeout, HTTP 429 or 5xx. Worth another attempt."""


class AmbiguousError(RetryableError):
    """The request may have reached the server, which may have acted on it: no answer in time, or
    the connection lost after sending. Retried only by an action whose repeat is harmless
    (``Action.repeatable``); for the others the step fails as ``ambiguous``. A failure before the
    request left (connection refused, connect timeout, no free connection) is a plain
    ``RetryableError``."""


class PermanentError(ActionError):
    """Another attempt cannot succeed: HTTP 4xx other than 429, bad parameters, a missing field."""


class SuspendedError(ActionError):
    """The action cannot run for a reason outside its event: SuperMQ refuses the reactor's login
    or does not answer it (``AuthBreaker`` open). The event is neither failed nor dead-lettered:
    it waits, and consuming pauses, until a probe login succeeds."""


class RuleSetError(RuleError):
    """Several rule errors found while loading a rules directory; ``errors`` lists each."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))
