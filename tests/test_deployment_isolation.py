"""Two conformance deployments at once (two engineers, two suites) must not share databases or
log files: each run names its own, and drops its databases when it stops."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conformance.deployment import Build, Deployment

pytestmark = pytest.mark.skipif(shutil.which("psql") is None, reason="needs psql and the local PostgreSQL")


def names(deployment: Deployment) -> set[str]:
    return {n for n in deployment._psql("SELECT datname FROM pg_database").split() if n}


def test_two_deployments_have_their_own_databases_and_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MF_HOME", str(tmp_path))
    tarball = tmp_path / "mainflux-59bcb72f52c0.tar.xz"
    first, second = Deployment(Build(tarball)), Deployment(Build(tarball))
    assert first.db_prefix != second.db_prefix
    assert first.logs != second.logs
    try:
        first._databases()
        second._databases()
        mine = {first.db_prefix + s for s in ("users", "things", "bootstrap", "certs")}
        assert mine <= names(first), "the first deployment's databases survive the second's start"
    finally:
        first.stop()
        second.stop()
    assert not {n for n in names(first) if n.startswith((first.db_prefix, second.db_prefix))}
