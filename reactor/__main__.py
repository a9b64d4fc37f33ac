"""``python -m reactor`` and the ``reactor`` console script."""

import sys

from reactor.signals import defer_stop_signals


def run() -> None:
    """Stop signals are noted from the first moment (see ``reactor.signals``), then the CLI runs."""
    defer_stop_signals()
    from reactor.cli import main  # noqa: PLC0415 - after the signals, as the imports take a while

    sys.exit(main())


if __name__ == "__main__":
    run()
