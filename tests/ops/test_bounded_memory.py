"""Memory is bounded by configuration, not by input: metric series (an unknown operation is one
``other`` label, streams are capped), the certificate-facts cache (keyed by digest, capped in
entries and in the text it parses) and the decoder's names and ids."""

from __future__ import annotations

import tracemalloc

import pytest

from reactor.certs import info
from reactor.delivery.outcome import Outcome
from reactor.errors import DecodeError
from reactor.events.decode import Decoder
from reactor.events.model import Event
from reactor.ops.metrics import MAX_STREAM_LABELS, Metrics
from reactor.sources.base import Delivery
from tests.certs.corpus import DAY, NOW, issue


def _outcome(stream: str, operation: str) -> Outcome:
    event = Event(
        source="redis",
        stream=stream,
        entry_id="1-0",
        operation=operation,
        raw_operation=operation,
        occurred_at_ns=0,
    )
    return Outcome(Delivery(stream, "1-0", {}), event)


def _series(metrics: Metrics, sample: str) -> int:
    return sum(1 for m in metrics.registry.collect() for s in m.samples if s.name == sample)


def test_unknown_operations_are_one_label_and_streams_are_capped() -> None:
    metrics = Metrics()
    for n in range(2_000):
        metrics.observe(_outcome("supermq.bootstrap", f"config.{n:0>240}"))  # within max_name_chars
    for n in range(500):
        metrics.observe(_outcome(f"events.supermq.s{n}", "config.create"))
        metrics.observe(Outcome(Delivery(f"events.supermq.m{n}\ud800", "1-0", {}), None))
    assert _series(metrics, "reactor_events_total") <= MAX_STREAM_LABELS + 2
    assert _series(metrics, "reactor_events_malformed_total") <= MAX_STREAM_LABELS + 1
    text = metrics.render().decode("utf-8")
    assert 'operation="other"' in text
    assert 'stream="other"' in text
    assert len(text) < 200_000
    metrics.observe(_outcome("supermq.bootstrap", "config.create"))
    assert 'operation="config.create",stream="supermq.bootstrap"' in metrics.render().decode()


def test_operation_names_and_ids_longer_than_max_name_chars_are_malformed() -> None:
    decoder = Decoder()
    for fields in (
        {"operation": "config." + "x" * 65_536, "thing_id": "t"},
        {"operation": "config.create", "thing_id": "t" * 257},
        {"operation": "config.create", "external_id": "e" * 10_000},
    ):
        with pytest.raises(DecodeError, match=r"exceeds events\.max_name_chars"):
            decoder.decode(fields, source="redis", stream="supermq.bootstrap", entry_id="1-0")


def test_certinfo_gives_the_facts_and_ages_them() -> None:
    cert = issue("dev", not_after=NOW + 10 * DAY)
    facts = info.certinfo(cert.pem)
    assert facts["subject"] == "CN=dev"
    assert 9.9 < facts["days_left"] <= 10
    escaped = info.certinfo(cert.pem.replace("\n", "\\n"))  # escaped newlines, as events carry them
    assert escaped["serial"] == facts["serial"]
    assert info.certinfo("not a pem")["days_left"] is None


def test_the_certinfo_cache_is_bounded_whatever_the_input() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        certs = [issue(f"d{n}").pem for n in range(info.CACHE_ENTRIES + 44)]
        for pem in certs:
            info.certinfo(pem)
        assert info.cache_size() <= info.CACHE_ENTRIES
        del certs
        for n in range(300):  # 300 distinct 1 MiB "certificates": refused unparsed, nothing kept
            big = f"-----BEGIN CERTIFICATE-----{n:08d}{'A' * (1 << 20)}-----END CERTIFICATE-----"
            assert "more than" in info.certinfo(big)["error"]
            del big
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert info.cache_size() <= info.CACHE_ENTRIES
    assert kept < 4 * 1024 * 1024, f"{kept} bytes kept"
