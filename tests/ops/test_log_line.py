"""The per-event log line's fast path (issue 17): redacted texts reused per (key, text), one JSON
encoder, level and time added after redaction. The line must stay what it was: every value masked
by its key and by what it looks like, each time it is logged, in bounded memory."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from types import SimpleNamespace

import structlog
from structlog.testing import capture_logs

from reactor.app import log_outcome
from reactor.ops import logging as reactor_logging
from reactor.ops.logging import EventLines, configure_logging, get_logger

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZWFjdG9yIn0.c2lnbmF0dXJlLXZhbHVl"


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_text_is_masked_by_its_key_whatever_was_logged_before() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    try:
        log = get_logger("t")
        for _ in range(3):
            log.info("event.acted", note="plain-Value-77", password="plain-Value-77", header=f"Bearer {JWT}")
        log.info("event.acted", token="plain-Value-77", note="plain-Value-77")
    finally:
        configure_logging("ERROR", "json")
    lines = _lines(stream)
    assert len(lines) == 4
    for line in lines[:3]:
        assert line["note"] == "plain-Value-77"
        assert line["password"] == "***"
        assert JWT not in json.dumps(line)
        assert "eyJ" not in str(line["header"])
        assert line["level"] == "info"
        assert str(line["timestamp"]).endswith("Z")
    assert lines[3]["token"] == "***"
    assert lines[3]["note"] == "plain-Value-77"
    assert "plain-Value-77" not in stream.getvalue().split("\n")[3].replace('"note": "plain-Value-77"', "")


def test_the_reused_texts_are_bounded_by_configuration_not_by_input() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    try:
        log = get_logger("t")
        for i in range(3 * reactor_logging._REDACTED_MAX):
            log.info("event.acted", entry_id=f"{i}-0")
            assert len(reactor_logging._REDACTED) <= reactor_logging._REDACTED_MAX
    finally:
        configure_logging("ERROR", "json")
    assert len(_lines(stream)) == 3 * reactor_logging._REDACTED_MAX


def test_a_value_json_has_no_form_for_is_written_as_its_repr() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    try:
        get_logger("t").info(
            "x", thing=object.__new__(type("Thing", (), {"__repr__": lambda self: "<thing>"}))
        )
    finally:
        configure_logging("ERROR", "json")
    assert _lines(stream)[0]["thing"] == "<thing>"


def test_no_line_is_built_when_info_is_filtered_out() -> None:
    """At WARNING (an operator's choice), the per-event ``event.acted`` line is dropped: the
    observer must not build its fields (the event's summary, the rule list) for nothing."""
    built: list[str] = []

    def summary() -> dict[str, object]:
        built.append("summary")
        return {"stream": "s", "entry_id": "1-0", "operation": "config.create"}

    outcome = SimpleNamespace(
        delivery=SimpleNamespace(stream="s", entry_id="1-0"),
        event=SimpleNamespace(summary=summary),
        rules=[SimpleNamespace(rule="r")],
        dead_letter=None,
    )
    for level, lines in (("WARNING", 0), ("INFO", 1)):
        stream = io.StringIO()
        configure_logging(level, "json", stream)
        try:
            observer = log_outcome(get_logger("t"))
            observer(outcome)  # type: ignore[arg-type]
            observer.flush()
        finally:
            configure_logging("ERROR", "json")
        assert len(_lines(stream)) == lines
    assert built == ["summary"]  # only for the line written at INFO


def test_the_timestamp_is_iso_utc_and_now_and_lists_are_masked_each_time() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    try:
        log = get_logger("t")
        before = datetime.now(UTC)
        for _ in range(2):
            log.info("event.acted", rules=["r1", f"Bearer {JWT}"], password=["a-secret-value"])
        after = datetime.now(UTC)
    finally:
        configure_logging("ERROR", "json")
    for line in _lines(stream):
        stamp = str(line["timestamp"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", stamp), stamp
        assert before.replace(microsecond=0) <= datetime.fromisoformat(stamp) <= after
        assert line["rules"] == ["r1", "Bearer ***"]
        assert line["password"] == "***"
    assert JWT not in stream.getvalue()
    assert "a-secret-value" not in stream.getvalue()


class _Writes(io.StringIO):
    """A stream that counts the calls that wrote to it."""

    calls = 0

    def write(self, text: str) -> int:
        self.calls += 1
        return super().write(text)


def _fields(i: int) -> dict[str, object]:
    return {
        "stream": "mainflux.bootstrap",
        "entry_id": f"{1693313286544 + i}-{i}",
        "operation": "config.create",
        "device": f"thing-{i}",
        "rules": ["r1", f"Bearer {JWT}"],
        "token": "plain-Value-77",
        "note": f"see http://u:hunter2pass@host/{i}",
    }


def test_the_per_event_lines_are_the_lines_the_chain_writes_and_one_write_a_batch() -> None:
    """``EventLines`` renders without structlog's dispatch: each line must be the line the
    configured chain writes for the same call (context, fields, event, level; every value
    masked), and a batch of them goes out in one write, not a flushed write per line."""
    chain, direct = _Writes(), _Writes()
    for stream, via_lines in ((chain, False), (direct, True)):
        configure_logging("INFO", "json", stream)
        try:
            log = get_logger("t").bind(worker="w1")
            lines = EventLines(log)
            for i in range(50):
                if via_lines:
                    lines.info("event.acted", _fields(i))
                else:
                    log.info("event.acted", **_fields(i))
            lines.flush()
        finally:
            configure_logging("ERROR", "json")
    ours, theirs = _lines(direct), _lines(chain)
    assert len(ours) == len(theirs) == 50
    for a, b in zip(ours, theirs, strict=True):
        assert list(a) == list(b)  # same keys in the same order
        assert {**a, "timestamp": ""} == {**b, "timestamp": ""}
        assert a["token"] == "***"
        assert a["rules"] == ["r1", "Bearer ***"]
        assert "hunter2pass" not in json.dumps(a)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", str(a["timestamp"]))
    assert direct.getvalue().count("\n") == 50
    assert direct.calls <= 2  # the text and print's end, for 50 lines
    assert chain.calls >= 50


def test_the_per_event_lines_go_through_the_logger_when_it_runs_another_chain() -> None:
    """Captured by a test (or any chain not ``configure_logging``'s), a line is the logger's."""
    configure_logging("INFO", "json", io.StringIO())
    try:
        with capture_logs() as captured:
            lines = EventLines(get_logger("t"))
            lines.info("event.acted", _fields(1))
            lines.flush()
    finally:
        configure_logging("ERROR", "json")
    assert [c["event"] for c in captured] == ["event.acted"]
    assert captured[0]["entry_id"] == "1693313286545-1"


def test_the_per_event_lines_take_structlog_context_variables() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    try:
        with structlog.contextvars.bound_contextvars(request="q-1", password="pw-in-context"):
            lines = EventLines(get_logger("t"))
            lines.info("event.acted", _fields(2))
            lines.flush()
    finally:
        configure_logging("ERROR", "json")
    (line,) = _lines(stream)
    assert line["request"] == "q-1"
    assert line["password"] == "***"
