"""Dead-letter records: what could not succeed, with the reason, secrets masked; each store's
records as stored (``Record``) and the face through which ``reactor dlq`` reads and edits them
(``DeadLetterStore``)."""

from __future__ import annotations

import base64
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reactor.events.model import RAW_B64
from reactor.redact import redact, redact_text, utf8_safe
from reactor.secrets import Sealer, SealError
from reactor.sources.base import Delivery


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


@dataclass(frozen=True)
class Record:
    """One dead-letter entry as stored."""

    id: str
    fields: dict[str, str]

    @property
    def at_ns(self) -> int:
        return int(self.fields.get("at_ns") or 0)

    def original(self, sealer: Sealer | None) -> tuple[dict[str, Any], str | None]:
        """The event as received (from ``sealed``), else the masked one and why."""
        sealed = self.fields.get("sealed")
        why: str | None
        if sealed and sealer is not None:
            try:
                opened = sealer.open_json(sealed)
            except (SealError, ValueError) as exc:
                why = f"record {self.id}: {exc}: replaying its masked event"
            else:
                if isinstance(opened, dict):
                    return opened, None
                why = f"record {self.id}: its sealed event is not an object: replaying its masked event"
        else:
            why = None if not sealed else f"record {self.id}: no key to open it: replaying its masked event"
        return json.loads(self.fields.get("event") or "{}"), why

    def delivery(self, sealer: Sealer | None = None) -> Delivery:
        """The original event as a redelivery of its original entry."""
        payload, _ = self.original(sealer)
        body: dict[str, Any] | bytes = payload
        binary = payload.pop(RAW_B64, None)
        if isinstance(binary, dict):  # fields that were not UTF-8: their bytes again
            payload.update({str(k): base64.b64decode(str(v)) for k, v in binary.items()})
        if set(payload) == {"body"}:
            body = str(payload["body"]).encode()
        elif set(payload) == {"body_b64"}:
            body = base64.b64decode(payload["body_b64"])
        return Delivery(
            self.fields.get("stream", ""),
            self.fields.get("entry_id", ""),
            body,
            deliveries=2,  # a redelivery (completed steps skipped); never poison: replaying is deliberate
        )


class DeadLetterStore(ABC):
    """Where one backend keeps dead-letter records: list, show, delete, purge, and the replay's
    swap of replayed records for the ones that failed again."""

    #: The stream, subject or queue, for messages.
    where: str

    async def records(
        self,
        *,
        ids: Sequence[str] = (),
        rule: str | None = None,
        since_ns: int | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Records, newest first, filtered by id, rule and time."""
        records = await self._fetch(ids, limit)
        if rule is not None:
            records = [r for r in records if r.fields.get("rule") == rule]
        if since_ns is not None:
            records = [r for r in records if r.at_ns >= since_ns]
        return records

    @abstractmethod
    async def _fetch(self, ids: Sequence[str], limit: int | None) -> list[Record]:
        """The records with these ids, or the newest ``limit`` (all when None), newest first."""

    @abstractmethod
    async def count(self) -> int:
        """How many records are kept."""

    @abstractmethod
    async def delete(self, ids: Sequence[str]) -> int: ...

    @abstractmethod
    async def purge(self) -> int: ...

    @abstractmethod
    async def replace(self, add: Sequence[DeadLetter], remove: Sequence[str]) -> None:
        """Write ``add`` and delete the records ``remove`` (after a replay)."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Release the connection."""
