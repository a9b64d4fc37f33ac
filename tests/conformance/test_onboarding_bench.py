"""The onboarding benchmark (``bench/onboarding.py``, issue 17) run tiny against the real Mainflux,
so that ``make bench``'s section keeps working: it starts the deployment itself (under
/tmp/conformance.lock, which a run under ``flock /tmp/conformance.lock pytest`` already holds),
measures both sides, and reads every device back; and its check does fail on a fleet that
nobody onboarded."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import affinity, onboarding
from bench.common import DeployedLog
from bench.mainflux_fleet import ACTIVATE, Admin, Onboarded, Urls, make_configs, make_devices, read_back
from tests.conformance.deployment import ADMIN_EMAIL, ADMIN_SECRET, NoDeploymentError, locate_tarball
from tests.conftest import missing


@pytest.fixture
def tarball() -> None:
    try:
        locate_tarball()
    except NoDeploymentError as exc:
        missing(f"the real Mainflux deployment ({exc})")


@pytest.mark.timeout(600)  # a cold build of Mainflux takes ~90 s, another run may hold the lock
@pytest.mark.usefixtures("tarball")
async def test_onboarding_benchmark_runs_tiny_and_its_check_can_fail(tmp_path: Path) -> None:
    async with onboarding.mainflux() as deployment:
        result = await onboarding.measure(deployment, devices=10, repeats=1)
        urls = Urls(deployment.url("users"), deployment.url("things"), deployment.url("bootstrap"))
        async with Admin(urls, ADMIN_EMAIL, ADMIN_SECRET) as admin:
            idle = await make_devices(admin, "idle", 3)
            await make_configs(admin, idle)  # config.create published, nobody consuming
            state = await read_back(admin, idle)
            log = DeployedLog(tmp_path)
            try:
                rounds = onboarding.Rounds(deployment, admin, log, tmp_path)
                with pytest.raises(onboarding.OnboardingError, match="onboarded 0 of 3"):
                    await rounds.check(idle, "nobody")
            finally:
                log.close()
    assert state == Onboarded(active=0, connected=0, devices=3)
    assert not result.failed
    assert result.ratio is not None
    assert result.ratio > 0
    assert "10 devices per run" in result.figures["setup"]
    assert "p50" in result.figures[f"platform latency, {ACTIVATE} as the bare script saw it"]
    # Beside the shared cores, the pinned configuration (or why not), and which one is the headline.
    pinned = result.figures[onboarding.PINNED]
    if affinity.unavailable() is None:
        assert "every thread still on its CPU at the end: yes" in pinned
        assert "p50" in result.figures[f"pinned: platform latency, {ACTIVATE} as the bare script saw it"]
        assert f"{result.ratio:.3f}" == result.figures["pinned: ratio, best bare over best reactor"]
        assert result.figures["headline ratio"].startswith("the pinned ratio")
    else:
        assert pinned.startswith("not measured: ")
        assert f"{result.ratio:.3f}" == result.figures["ratio, best bare over best reactor"]


async def test_without_the_deployment_the_section_says_not_measured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REACTOR_MAINFLUX_DIR", str(tmp_path))  # a user's clone: no tarball
    result = await onboarding.run(devices=10, repeats=1)
    assert result.ratio is None
    assert not result.failed
    assert "no Mainflux source tarball" in result.figures["not measured"]
    assert f"## {onboarding.NAME}" in result.lines()
