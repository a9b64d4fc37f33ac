"""``bench.fuzz`` small: every crasher of issue 14 and random hostile entries against a live
``reactor run`` on a private Redis. Nothing dies, nothing stays pending, every entry is acked or
dead-lettered as its generator expects, and RSS and the metric series stay bounded."""

from __future__ import annotations

from bench.fuzz import MIXED, run


async def test_fuzzed_entries_against_a_live_daemon() -> None:
    report = await run(seed=7, mixed=40 * len(MIXED), operations=300, certs=20)
    assert report.deaths == 0
    assert report.exit_code == 0
    assert report.tracebacks == 0
    assert report.pending_at_end == 0
    assert [p.unaccounted for p in report.phases] == [[] for _ in report.phases]
    assert sum(p.acked + p.dead_lettered for p in report.phases) == report.entries
    by_name = {p.name: p for p in report.phases}
    assert by_name["poison"].dead_lettered == 10  # those that ran alone once; not those merely in flight
    assert by_name["operations"].dead_lettered == 300
    assert by_name["labels"].series - by_name["operations"].series < 40  # one `other` label, not 300
    assert max(p.series for p in report.phases) < 400
    assert max(p.peak_rss_mib for p in report.phases) < report.start_rss_mib + 250
