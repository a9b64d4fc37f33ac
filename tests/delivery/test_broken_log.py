"""A log output that cannot be written (a full disk, a closed pipe) loses nothing the daemon owes:
every event of a batch is settled, counted and written to the audit trail (issue: the settler's
handler logged ``worker.observer_failed`` to the same broken stream, and that error skipped the
audit step and stopped the settler)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
import structlog

from reactor.app import Reactor
from reactor.ops.logging import configure_logging, get_logger
from reactor.settings import load_settings
from reactor.sources.memory import MemorySource

RULE = '[[rule]]\nname = "n"\non = ["config.create"]\n[[rule.actions]]\ntype = "noop"\n'


def _closed_pipe() -> TextIO:
    read, write = os.pipe()
    os.close(read)
    return os.fdopen(write, "w")


@pytest.fixture(params=["dev-full", "closed-pipe"])
def broken_log(request: pytest.FixtureRequest) -> Iterator[TextIO]:
    stream = open("/dev/full", "w") if request.param == "dev-full" else _closed_pipe()  # noqa: SIM115
    before = structlog.get_config()
    configure_logging("INFO", "json", stream)
    try:
        yield stream
    finally:
        structlog.configure(**before)  # what the other tests run with (their capture sees warnings)
        with contextlib.suppress(OSError):
            stream.close()


async def test_a_broken_log_loses_no_audit_row_and_settles_every_event(
    tmp_path: Path, broken_log: TextIO, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "r.toml").write_text(RULE)
    settings = load_settings(
        None, source="memory", rules={"dir": tmp_path, "reload_interval_s": 0},
        state={"path": tmp_path / "s.db"}, ops={"audit": True, "listen": ""},
    )  # fmt: skip
    source = MemorySource([])
    reactor = Reactor.build(settings, source, get_logger("reactor"))
    try:
        await source.start()
        for batch in range(2):  # the settler is still alive for the second batch
            for n in range(5):
                source.add("s", {"operation": "config.create", "thing_id": f"d{batch}-{n}"})
            outcomes = await reactor.worker.process(await source.read(10, 10))
            assert len(outcomes) == 5
        assert len(source.acked) == 10
        assert reactor.worker.counters.events == 10
        assert reactor.worker.in_flight == 0
        assert reactor.audit is not None
        assert len(await reactor.audit.query()) == 10
    finally:
        await reactor.state.close()
        if reactor.audit is not None:
            await reactor.audit.close()
    assert capsys.readouterr().err.count("log output") <= 1  # one line at most, no traceback loop
