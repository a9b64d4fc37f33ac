"""Checkpoints of an SQLite file's write-ahead log in a thread of their own (issue 17).

A checkpoint copies the logged pages into the database file and syncs it. SQLite runs one in the
connection that commits once the log passes 1,000 pages, that is on the event loop: 2-11 ms
stalls in the latency benchmark (the state store and the audit trail write ~1,800 pages a second
at 1,000 events/s), each holding every event in flight. A connection given to ``off_the_loop``
checkpoints no more; a thread does it every ``interval_s``, PASSIVE (it never waits on a writer
and no writer waits on it), with SQLite's lock released from Python's so the loop runs meanwhile.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path


class Checkpointer:
    """A thread checkpointing ``path`` every ``interval_s`` until ``close``."""

    def __init__(self, path: Path, interval_s: float = 0.5) -> None:
        self._path = path
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=0)
        try:
            while not self._stop.wait(self._interval_s):
                with contextlib.suppress(sqlite3.Error):  # busy or failing: the next round tries again
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            db.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def off_the_loop(db: sqlite3.Connection, path: Path) -> Checkpointer:
    """Turn ``db``'s own checkpoints off; the thread that does them instead (to close with it)."""
    db.execute("PRAGMA wal_autocheckpoint=0")
    return Checkpointer(path)
