"""Dead-letter records: what could not succeed, with the reason, secrets masked."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reactor.redact import redact, redact_text, utf8_safe


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One event that ended in the dead-letter stream, and why.

    ``reason`` is a fixed word (``malformed``, ``action_failed``, ``ambiguous`` for a call that may
    have reached the server and must not be sent twice, ``poison``, ``internal_error`` for a bug
    in the reactor itself); ``error`` the message; ``rule`` / ``action`` / ``status`` /
    ``attempts`` say where and how it failed.
    """

    stream: str
    entry_id: str
    reason: str
    error: str
    event: Mapping[str, Any]
    rule: str = ""
    action: str = ""
    status: int | None = None
    attempts: int = 0
    at_ns: int = field(default_factory=time.time_ns)
    #: Values known to be secrets (the event's secret fields), masked wherever they appear.
    secrets: frozenset[str] = frozenset()
    #: The event as received, sealed (``reactor.secrets.Sealer``): what ``dlq replay`` sends
    #: again, secrets included, while ``event`` (what ``dlq show`` prints) is masked.
    sealed: str = ""

    def to_fields(self) -> dict[str, str]:
        """The record as stream fields, every value masked by the redaction layer.

        Never raises, whatever the event holds: every value is text encodable as UTF-8, and an
        event that cannot be serialised is recorded as why not.
        """
        fields = {
            "stream": utf8_safe(self.stream),
            "entry_id": utf8_safe(self.entry_id),
            "reason": self.reason,
            "error": redact_text(self.error, self.secrets),
            "rule": utf8_safe(self.rule),
            "action": utf8_safe(self.action),
            "status": "" if self.status is None else str(self.status),
            "attempts": str(self.attempts),
            "at_ns": str(self.at_ns),
            "event": self._event_json(),
        }
        if self.sealed:
            fields["sealed"] = self.sealed
        return fields

    def _event_json(self) -> str:
        try:
            return json.dumps(redact(dict(self.event), secrets=self.secrets), sort_keys=True, default=str)
        except (ValueError, TypeError, RecursionError) as exc:  # keys that do not sort, a cycle
            return json.dumps({"unserialisable": f"{type(exc).__name__}: {exc}"})
