"""``reactor certs inspect`` and ``reactor certs dev-ca``."""

from __future__ import annotations

import stat
from pathlib import Path

from reactor.certs.ca import LocalCA
from reactor.certs.validate import Policy, validate
from tests.certs.corpus import Corpus
from tests.conftest import reactor_cli

cli = reactor_cli


def test_inspect_a_file(tmp_path: Path) -> None:
    corpus = Corpus()
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "ca.pem").write_text(corpus.root.pem)
    env = {"REACTOR_CERTS__TRUST_DIR": str(trust)}
    good, expired = tmp_path / "good.pem", tmp_path / "expired.pem"
    good.write_text(corpus.pem("valid"))
    expired.write_text(corpus.pem("expired"))
    key = tmp_path / "key.pem"
    key.write_text(corpus.cases["valid"][0].key_pem)
    ok = cli("certs", "inspect", str(good), "--key", str(key), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verdict: OK" in ok.stdout
    assert "chain       CN=" in ok.stdout
    assert "BEGIN" not in ok.stdout  # the key is never printed
    bad = cli("certs", "inspect", str(expired), env=env)
    assert bad.returncode == 1
    assert "verdict: INVALID" in bad.stdout
    assert "- expired on" in bad.stdout


def test_dev_ca_issues_trusted_device_certs(tmp_path: Path) -> None:
    directory = tmp_path / "dev-ca"
    made = cli("certs", "dev-ca", "--dir", str(directory))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE((directory / "ca.key").stat().st_mode) == 0o600
    ca = LocalCA.load(directory)
    pem, key_pem, _, _ = ca.issue("thing-key-1", "thing-1", 3600 * 24 * 90)
    policy = Policy.from_trust_dir(directory)
    assert validate(pem, policy, key_pem=key_pem, identity="thing-key-1").verdict == "ok"
