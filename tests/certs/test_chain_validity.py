"""Every certificate on the path must be valid, the trust anchor included (issue 19).

A leaf issued by an expired (or not yet valid) root or intermediate had verdict ``ok``: only the
leaf and the intermediates were checked. The chains are built here, at run time; ``openssl
verify`` is the reference for chain and time.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reactor.certs.validate import Policy, validate
from tests.certs.corpus import DAY, NOW, Issued, issue

KEY = "5a4b7c0e-1f2d-4c3b-9a8e-7d6c5b4a3f21"


def _root(when: str) -> Issued:
    windows = {
        "valid": (NOW - 10 * DAY, NOW + 3650 * DAY),
        "expired": (NOW - 3650 * DAY, NOW - DAY),
        "not-yet-valid": (NOW + 10 * DAY, NOW + 3650 * DAY),
    }
    start, end = windows[when]
    return issue(f"Root {when}", ca=True, not_before=start, not_after=end)


def _chain(root: str, intermediate: str | None) -> tuple[Issued, list[Issued], Issued]:
    """(anchor, intermediates, leaf): the leaf itself valid now."""
    anchor = _root(root)
    if intermediate is None:
        return anchor, [], issue(KEY, anchor)
    inter = _root(intermediate)
    inter = issue(
        f"Intermediate {intermediate}",
        anchor,
        ca=True,
        key=inter.key,
        not_before=inter.cert.not_valid_before_utc,
        not_after=inter.cert.not_valid_after_utc,
    )
    return anchor, [inter], issue(KEY, inter)


CASES = {
    "root-valid": (("valid", None), None),
    "root-expired": (("expired", None), "chain: trust anchor CN=Root expired expired on"),
    "root-not-yet-valid": (
        ("not-yet-valid", None),
        "chain: trust anchor CN=Root not-yet-valid not yet valid",
    ),
    "intermediate-expired": (("valid", "expired"), "chain: intermediate CN=Intermediate expired expired on"),
    "intermediate-not-yet-valid": (
        ("valid", "not-yet-valid"),
        "chain: intermediate CN=Intermediate not-yet-valid not yet valid",
    ),
    "root-expired-above-a-valid-intermediate": (
        ("expired", "valid"),
        "chain: trust anchor CN=Root expired expired on",
    ),
}
CHAINS = {name: _chain(*args) for name, (args, _) in CASES.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_element_of_the_path_is_checked_for_validity(case: str) -> None:
    anchor, intermediates, leaf = CHAINS[case]
    policy = Policy(anchors=(anchor.cert,), intermediates=tuple(i.cert for i in intermediates))
    verdict = validate(leaf.pem, policy, identity=KEY)
    reason = CASES[case][1]
    if reason is None:
        assert verdict.verdict == "ok", verdict.reasons
        assert len(verdict.chain) == 2 + len(intermediates)
    else:
        assert verdict.verdict == "invalid"
        assert [r for r in verdict.reasons if r.startswith("chain")] == [
            next(r for r in verdict.reasons if r.startswith(reason))
        ], verdict.reasons


@pytest.mark.parametrize("case", sorted(CASES))
def test_path_validity_agrees_with_openssl(case: str, tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to cross-check verdicts")
    anchor, intermediates, leaf = CHAINS[case]
    (tmp_path / "ca.pem").write_text(anchor.pem)
    (tmp_path / "leaf.pem").write_text(leaf.pem)
    args = [openssl, "verify", "-CAfile", str(tmp_path / "ca.pem")]
    if intermediates:
        (tmp_path / "inter.pem").write_text("".join(i.pem for i in intermediates))
        args += ["-untrusted", str(tmp_path / "inter.pem")]
    result = subprocess.run([*args, str(tmp_path / "leaf.pem")], capture_output=True, text=True, check=False)
    policy = Policy(
        anchors=(anchor.cert,), intermediates=tuple(i.cert for i in intermediates), clock_skew_s=0
    )
    verdict = validate(leaf.pem, policy, identity=KEY)
    chain_or_time = [r for r in verdict.reasons if r.startswith(("chain", "expired", "not yet valid"))]
    assert (not chain_or_time) == (result.returncode == 0), (result.stdout, result.stderr, verdict.reasons)


def test_a_renewed_anchor_with_the_same_name_and_key_is_found_whatever_the_order() -> None:
    """Root rollover: the expired and the renewed root share subject and key; the leaf is valid
    under the renewed one even when the expired one comes first in the trust directory."""
    old = _root("expired")
    renewed = issue("Root expired", ca=True, key=old.key, not_before=NOW - DAY, not_after=NOW + 3650 * DAY)
    leaf = issue(KEY, old)  # signed by the key both hold
    for anchors in ((old.cert, renewed.cert), (renewed.cert, old.cert)):
        verdict = validate(leaf.pem, Policy(anchors=anchors), identity=KEY)
        assert verdict.verdict == "ok", verdict.reasons


def test_clock_skew_applies_to_the_anchor_too() -> None:
    anchor = issue("Root just expired", ca=True, not_before=NOW - 10 * DAY, not_after=NOW - DAY / 24 / 60)
    leaf = issue(KEY, anchor)
    assert validate(leaf.pem, Policy(anchors=(anchor.cert,), clock_skew_s=300), identity=KEY).verdict == "ok"
    verdict = validate(leaf.pem, Policy(anchors=(anchor.cert,), clock_skew_s=0), identity=KEY)
    assert any(r.startswith("chain: trust anchor CN=Root just expired expired on") for r in verdict.reasons)
