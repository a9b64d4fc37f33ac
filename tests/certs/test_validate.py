"""Certificate verdicts on a generated corpus; chain and validity agree with ``openssl verify``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from reactor.certs.validate import Policy, validate
from reactor.durations import renew_threshold_s
from tests.certs.corpus import Corpus, issue

CORPUS = Corpus()
POLICY = Policy(anchors=(CORPUS.root.cert,), renew_before="30d")
KEY = CORPUS.thing_key

EXPECTED = {
    "valid": ("ok", []),
    "through-intermediate": ("ok", []),
    "expired": ("invalid", ["expired on"]),
    "not-yet-valid": ("invalid", ["not yet valid"]),
    "expiring-soon": ("renew", ["within renew_before 30d"]),
    "wrong-ca": ("invalid", ["chain: no trusted issuer found for CN=Unrelated Root CA"]),
    "weak-rsa": ("invalid", ["weak key: RSA 1024 bits"]),
    "ca-as-device": (
        "invalid",
        ["a CA certificate used as a device certificate", "no extended key usage: clientAuth is required"],
    ),
    "wrong-eku": ("invalid", ["extended key usage lacks clientAuth"]),
    "wrong-identity": ("invalid", ["identity: the CN is not the device's thing_key"]),
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_verdicts(case: str) -> None:
    issued, _ = CORPUS.cases[case]
    verdict = validate(CORPUS.pem(case), POLICY, key_pem=issued.key_pem, identity=KEY)
    expected, reasons = EXPECTED[case]
    assert verdict.verdict == expected, verdict.reasons
    assert len(verdict.reasons) == len(reasons), verdict.reasons
    for fragment, reason in zip(reasons, verdict.reasons, strict=True):
        assert fragment in reason


def test_fields_for_rule_conditions() -> None:
    verdict = validate(CORPUS.pem("expiring-soon"), POLICY, identity=KEY)
    assert 4.9 < (verdict.days_left or 0) <= 5
    assert verdict.issuer == "CN=Test Root CA"
    assert verdict.subject == f"CN={KEY}"
    assert verdict.key_type == "EC secp256r1"
    assert verdict.chain == [f"CN={KEY}", "CN=Test Root CA"]
    assert verdict.as_dict()["not_after"] == verdict.not_after


def test_key_mismatch() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    stranger = issue("x", CORPUS.root, key=other)
    verdict = validate(CORPUS.pem("valid"), POLICY, key_pem=stranger.key_pem)
    assert verdict.verdict == "invalid"
    assert verdict.reasons == ["the private key does not match the certificate"]


def test_single_line_and_escaped_pem_as_events_carry_them() -> None:
    pem = CORPUS.pem("valid")
    one_line = pem.replace("\n", "")
    escaped = pem.replace("\n", "\\n")
    for text in (one_line, escaped):
        assert validate(text, POLICY, identity=KEY).verdict == "ok"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "client_cert: empty"),
        ("not a pem at all", "no PEM block"),
        ("-----BEGIN CERTIFICATE-----Zm9vYmFy-----END CERTIFICATE-----", "does not parse"),
    ],
)
def test_garbage(text: str, reason: str) -> None:
    verdict = validate(text, POLICY)
    assert verdict.verdict == "invalid"
    assert reason in verdict.reasons[0]


def test_a_private_key_where_a_certificate_belongs() -> None:
    issued, _ = CORPUS.cases["valid"]
    assert validate(issued.key_pem, POLICY).reasons == ["client_cert: holds a private key, not a certificate"]
    encrypted = issued.encrypted_key_pem().replace("\n", "")  # as the catalogue's ca_cert example
    assert validate(encrypted, POLICY).reasons == [
        "client_cert: holds an encrypted private key, not a certificate"
    ]


def test_an_encrypted_key_is_named() -> None:
    issued, _ = CORPUS.cases["valid"]
    verdict = validate(CORPUS.pem("valid"), POLICY, key_pem=issued.encrypted_key_pem())
    assert verdict.reasons == ["key: encrypted (PKCS#8 with a passphrase); the key cannot be checked"]


def test_clock_skew_and_percentage_renewal() -> None:
    import datetime as dt

    soon = issue(KEY, CORPUS.root, not_before=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60))
    assert validate(soon.pem, POLICY, identity=KEY).verdict == "ok"  # within the 300 s skew
    strict = Policy(anchors=POLICY.anchors, clock_skew_s=0)
    assert validate(soon.pem, strict, identity=KEY).verdict == "invalid"
    assert renew_threshold_s("33%", 90 * 86400) == pytest.approx(29.7 * 86400)
    assert renew_threshold_s("720h", 0) == 720 * 3600
    with pytest.raises(ValueError, match="renew_before"):
        renew_threshold_s("soon", 1)


def test_trust_dir_policy(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(CORPUS.root.pem)
    (tmp_path / "intermediate.crt").write_text(CORPUS.intermediate.pem)
    (tmp_path / "notes.pem").write_text("not a certificate")
    policy = Policy.from_trust_dir(tmp_path)
    assert [c.subject for c in policy.anchors] == [CORPUS.root.cert.subject]
    issued, _ = CORPUS.cases["through-intermediate"]
    assert validate(issued.pem, policy, identity=KEY).verdict == "ok"  # the intermediate comes from the dir


CHAIN_CASES = ["valid", "through-intermediate", "expired", "not-yet-valid", "wrong-ca"]


@pytest.mark.parametrize("case", CHAIN_CASES)
def test_chain_and_validity_agree_with_openssl(case: str, tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to cross-check verdicts")
    issued, options = CORPUS.cases[case]
    (tmp_path / "ca.pem").write_text(CORPUS.root.pem)
    (tmp_path / "leaf.pem").write_text(issued.pem)
    args = [openssl, "verify", "-CAfile", str(tmp_path / "ca.pem")]
    if options["chain"]:
        (tmp_path / "inter.pem").write_text(CORPUS.intermediate.pem)
        args += ["-untrusted", str(tmp_path / "inter.pem")]
    result = subprocess.run([*args, str(tmp_path / "leaf.pem")], capture_output=True, text=True, check=False)
    openssl_ok = result.returncode == 0
    verdict = validate(CORPUS.pem(case), Policy(anchors=POLICY.anchors, clock_skew_s=0), identity=KEY)
    chain_or_time = [r for r in verdict.reasons if r.startswith(("chain", "expired", "not yet valid"))]
    assert (not chain_or_time) == openssl_ok, (result.stdout, result.stderr, verdict.reasons)
