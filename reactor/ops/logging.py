"""Structured logging: JSON lines (or a console format), every line through the redaction layer."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from reactor.redact import is_secret_key, redact, utf8_safe

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


#: Redacted short texts by (key, text): a line's event name, logger, stream, operation and rule
#: names repeat on every line. ``redact`` of a text is a function of the text and its key alone
#: (no secrets given here), so the result can be reused; bounded: cleared when full.
_REDACTED: dict[tuple[str, str | tuple[str, ...]], Any] = {}
_REDACTED_MAX = 4096
_CACHED_TEXT = 256
_CACHED_LIST = 16


def _redact_value(key: str, value: Any) -> Any:
    if type(value) is str and _plain_id(value) and not is_secret_key(key):
        return value  # a Redis entry id or a number: nothing to mask, nothing to cache
    if type(value) is list and len(value) <= _CACHED_LIST:  # a line's rule names
        if all(type(v) is str and len(v) <= _CACHED_TEXT for v in value):
            return _reused(key, tuple(value), value)
        return redact(value, key)
    if type(value) is not str or len(value) > _CACHED_TEXT:
        return redact(value, key)
    return _reused(key, value, value)


def _plain_id(text: str) -> bool:
    """Digits and dashes only (``1693313286544-0``): no pattern ``redact`` masks can be in it."""
    return text.replace("-", "").isdigit()


def _reused(key: str, text: str | tuple[str, ...], value: Any) -> Any:
    try:
        return _REDACTED[key, text]
    except KeyError:
        pass
    masked = redact(value, key)  # a list comes back as a new list: never one a caller holds
    if len(_REDACTED) >= _REDACTED_MAX:
        _REDACTED.clear()
    _REDACTED[key, text] = masked
    return masked


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Every value masked and encodable as UTF-8 (``redact`` never raises on content)."""
    out = {}
    for k, v in event_dict.items():
        key = k if type(k) is str else str(k)
        out[utf8_safe(key)] = _redact_value(key, v)
    return out


_SECOND: tuple[int, str] = (-1, "")  # the last whole second stamped and its text (swapped whole)


def _timestamp(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``timestamp``: the time in UTC as ISO 8601, as ``TimeStamper(fmt="iso", utc=True)`` writes
    it (``2026-12-01T11:45:38.218431Z``, no fraction at a whole second); the date and time of day
    formatted once a second."""
    global _SECOND  # noqa: PLW0603 - one tuple, replaced whole: a thread sees an old or a new one
    now = time.time()
    second = int(now)
    cached = _SECOND
    if cached[0] != second:
        cached = _SECOND = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    micros = int((now - second) * 1_000_000)
    event_dict["timestamp"] = f"{cached[1]}.{micros:06d}Z" if micros else f"{cached[1]}Z"
    return event_dict


def _fallback(obj: Any) -> Any:
    """What the JSON renderer writes for a value JSON has no form for (as structlog's own)."""
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


#: One encoder for every line (``json.dumps`` with ``default=`` builds a new one per call).
_ENCODE = json.JSONEncoder(default=_fallback).encode


def _serialize(obj: Any, **_: Any) -> str:
    return _ENCODE(obj)


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written, not when logging was set up (a
    redirected or replaced stderr, as under a test runner's capture, is then never a closed one)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR: Any = _CurrentStderr()


#: The JSON chain ``configure_logging`` installed last (empty for the console format): a
#: logger that still runs exactly this chain gets its ``EventLines`` rendered directly.
_JSON_CHAIN: tuple[Any, ...] = ()


def configure_logging(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Set up structlog once for the process; ``stream`` defaults to stderr."""
    global _JSON_CHAIN  # noqa: PLW0603 - what the process's logging is, as configured here
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_serialize)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.format_exc_info,
        _redact_processor,  # before the level and time are added: those are ours, never masked
        structlog.processors.add_log_level,
        _timestamp,
        renderer,
    ]
    _JSON_CHAIN = tuple(processors) if fmt == "json" else ()
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream or _STDERR),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "reactor") -> structlog.typing.FilteringBoundLogger:
    """The reactor's logger (bound to ``logger=name``)."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name).bind(logger=name)
    return logger


class EventLines:
    """Lines at INFO of one bound logger (the per-event ``event.acted``), written together by
    ``flush``: one write for a settled batch instead of a flushed write per line.

    While the logger runs the JSON chain ``configure_logging`` installed, unchanged (not captured
    by a test, not the console format), a line is rendered here as that chain renders it (the
    logger's context, the fields, the event name, the structlog context variables; every value
    masked by ``_redact_processor``; then level and timestamp; the same JSON encoder), without
    structlog's dispatch per line; otherwise each line goes through the logger as it is."""

    def __init__(self, logger: structlog.typing.FilteringBoundLogger) -> None:
        self._logger = logger
        self.enabled = logger.is_enabled_for(logging.INFO)  # fixed when the logger was bound
        self._pending: list[str] = []
        self._render: bool | None = None  # whether lines are rendered here: asked once a batch

    def info(self, event: str, fields: dict[str, Any]) -> None:
        """One line (``fields`` is the caller's, taken over: not used by it afterwards)."""
        if not self.enabled:
            return
        if self._render is None:
            self._render = self._direct()
        if not self._render or "exc_info" in fields:
            self._logger.info(event, **fields)
            return
        line = {**structlog.get_context(self._logger), **fields}
        line["event"] = event
        for key, value in structlog.contextvars.get_contextvars().items():
            line.setdefault(key, value)
        out = _redact_processor(None, "info", line)
        out["level"] = "info"
        self._pending.append(_ENCODE(_timestamp(None, "info", out)))

    def flush(self) -> None:
        """Write what ``info`` rendered, in one call to the logger's output."""
        self._render = None
        if self._pending:
            text, self._pending = "\n".join(self._pending), []
            self._logger._logger.msg(text)  # type: ignore[attr-defined]  # a PrintLogger (_direct)

    def _direct(self) -> bool:
        processors = getattr(self._logger, "_processors", None)
        return (
            bool(_JSON_CHAIN)
            and type(getattr(self._logger, "_logger", None)) is structlog.PrintLogger
            and processors is not None
            and len(processors) == len(_JSON_CHAIN)
            and all(a is b for a, b in zip(processors, _JSON_CHAIN, strict=True))
        )
