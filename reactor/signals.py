"""SIGINT and SIGTERM while the process is still starting (importing, loading rules, connecting).

Python's default for SIGTERM ends the process at once (exit 143, no log line), and SIGINT raises
``KeyboardInterrupt`` wherever the process is (a traceback during imports). ``defer_stop_signals``
runs first thing in ``python -m reactor`` and the console script: a stop signal is noted until
the daemon installs its own handlers (``reactor.app.install_signal_handlers``), which stop at
once, cleanly, with ``reactor.stopped`` logged. Commands other than the daemon get the default
behaviour back with ``restore_stop_signals`` (and a signal that came meanwhile takes effect).

Nothing heavy is imported here: it must be cheap to import before everything else.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []
_deferred: list[bool] = []


def _note(signum: int, _: FrameType | None) -> None:
    _received.append(signum)


def defer_stop_signals() -> None:
    """Note SIGINT/SIGTERM instead of acting on them, until handlers are installed or restored."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _note)
    _deferred.append(True)


def early_stop_signal() -> int | None:
    """The first stop signal noted while starting, if any."""
    return _received[0] if _received else None


def restore_stop_signals() -> None:
    """Python's defaults again (if they were deferred); a stop signal noted meanwhile is acted on now."""
    if not _deferred:
        return
    _deferred.clear()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _received:
        os.kill(os.getpid(), _received[0])
