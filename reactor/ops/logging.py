"""Structured logging: JSON lines (or a console format), every line through the redaction layer."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from reactor.redact import redact, utf8_safe

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Every value masked and encodable as UTF-8 (``redact`` never raises on content)."""
    return {utf8_safe(str(k)): redact(v, str(k)) for k, v in event_dict.items()}


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written, not when logging was set up (a
    redirected or replaced stderr, as under a test runner's capture, is then never a closed one)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR: Any = _CurrentStderr()


def configure_logging(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Set up structlog once for the process; ``stream`` defaults to stderr."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream or _STDERR),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "reactor") -> structlog.typing.FilteringBoundLogger:
    """The reactor's logger (bound to ``logger=name``)."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name).bind(logger=name)
    return logger
