"""``reactor demo``: the scenario runs through the shipped rules and reports every outcome."""

from __future__ import annotations

import io
import subprocess
import sys

from reactor.demo import DEMO_KEY, run_demo, scenario
from reactor.ops.logging import configure_logging
from reactor.settings import load_settings
from tests.conftest import REPO


async def test_demo_reports_every_event_and_settles_all() -> None:
    configure_logging("ERROR", "console", io.StringIO())
    out = io.StringIO()
    settings = load_settings(None, source="memory", rules={"dir": REPO / "rules"})
    assert await run_demo(settings, out) == 0
    text = out.getvalue()
    events = scenario()
    for n in range(1, len(events) + 1):
        assert f"\n#{n} " in text
    # The profile it plays and how the reactor chose it.
    assert "the simulator plays profile 'things'" in text
    assert "chose 'things': bootstrap service reports version 0.14.0 (Magistrala v0.14-v0.15)" in text
    # Era aliases are resolved and shown.
    assert "thing.bootstrap (published as bootstrap.thing.bootstrap)" in text
    assert "channel.remove_handler (published as group.remove_handler)" in text
    # The failed bootstrap goes to its own rule, the malformed entry to the dead-letter stream.
    assert "rule bootstrap-failed -> log: bootstrap FAILED for external id AA-00-00-00-00-01" in text
    assert "-> dead-letter (malformed): the 'data' field is not valid JSON" in text
    # The actions changed the simulated SuperMQ as the shipped rules say.
    assert "ok  rule onboard-new-config -> bootstrap.change_state" in text
    config = "config 74f00d13-d370-42c0-b528-04fff995275c"
    assert f"{config}: state=1 channels=['90aae157-d47f-4d71-9a68-b000c0025ae8']" in text
    assert '"reactor":{"bootstrapped":true' in text
    assert "thing connected to: ['90aae157-d47f-4d71-9a68-b000c0025ae8']" in text
    assert 'message on 90aae157-d47f-4d71-9a68-b000c0025ae8/: [{"n": "config", "vs": "updated"}]' in text
    assert "OpenAPI violations: 0" in text
    assert text.count("FAIL rule") == 1, "only the unenrolled device's provisioning"
    summary = text.strip().splitlines()[-1]
    assert summary.startswith(f"summary: {len(events)} events")
    assert f"1 dead-lettered, {len(events)} acked" in summary
    assert DEMO_KEY not in text
    # Zero-touch: the enrolled device provisioned once, its retries throttled, a stranger refused.
    assert "ok  rule zero-touch-provision -> provision:" in text
    assert text.count("skip rule zero-touch-provision -> throttle: throttled: key 'ZT-FACTORY-0001'") == 2
    refused = "FAIL rule zero-touch-provision -> provision: external id 'ZT-UNKNOWN-0009' is not enrolled"
    assert refused in text
    assert "GET /things/bootstrap/ZT-FACTORY-0001 with its derived key: 200" in text
    assert "things named ZT-FACTORY-0001: 1; ZT-UNKNOWN-0009: 0" in text


def test_demo_command_exits_zero() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reactor", "demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "summary:" in proc.stdout
