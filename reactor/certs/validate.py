"""Device certificate verdicts: ``ok``, ``renew`` (valid but due), or ``invalid`` — with every reason.

Checks: the PEM holds a certificate (not a key); the chain reaches a trust anchor through the
given or configured intermediates (issuer name and signature at every link, CA constraints on
issuers); not revoked on a CRL of its issuer in the trust directory; the validity window (with
clock skew) of every link; ``renew_before`` (a duration like ``30d``/``720h`` or a percentage of
the lifetime, as cert-manager does); the private key matches;
key type and size (RSA >= 2048, EC P-256 or stronger, Ed25519/Ed448); the leaf is not a CA;
key usage and extended key usage (clientAuth); the identity is bound to the device (SuperMQ's
certs service puts the thing key in the CN; configurable).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reactor.certs.pem import PemError, certificates, private_key
from reactor.durations import renew_threshold_s

Bind = Literal["thing_key", "thing_id", "external_id", "san", "none"]
_STRONG_CURVES = ("secp256r1", "secp384r1", "secp521r1")


@dataclass(frozen=True)
class Policy:
    """What a device certificate must satisfy."""

    anchors: tuple[x509.Certificate, ...] = ()
    intermediates: tuple[x509.Certificate, ...] = ()
    crl_paths: tuple[Path, ...] = ()
    clock_skew_s: float = 300.0
    renew_before: str = "30d"
    min_rsa_bits: int = 2048
    require_client_auth: bool = True
    bind: Bind = "thing_key"

    @classmethod
    def from_trust_dir(cls, directory: Path, **kwargs: Any) -> Policy:
        """Anchors (self-signed) and intermediates from every ``*.pem``/``*.crt`` in ``directory``;
        CRLs (``crl.pem``, ``*.crl``) are read at each check, so a revocation counts at once."""
        anchors: list[x509.Certificate] = []
        intermediates: list[x509.Certificate] = []
        kwargs.setdefault("crl_paths", (directory / "crl.pem", *sorted(directory.glob("*.crl"))))
        for path in (
            sorted([*directory.glob("*.pem"), *directory.glob("*.crt")]) if directory.is_dir() else []
        ):
            if path.name == "crl.pem":
                continue
            try:
                found = certificates(path.read_text(encoding="utf-8"), str(path))
            except PemError:
                continue  # keys and other material can live there too
            for cert in found:
                (anchors if cert.issuer == cert.subject else intermediates).append(cert)
        return cls(anchors=tuple(anchors), intermediates=tuple(intermediates), **kwargs)


@dataclass
class Verdict:
    """The outcome: ``ok``, ``renew`` or ``invalid``, every reason, and fields for rule conditions."""

    verdict: Literal["ok", "renew", "invalid"] = "ok"
    reasons: list[str] = field(default_factory=list)
    subject: str = ""
    issuer: str = ""
    serial: str = ""
    not_before: str = ""
    not_after: str = ""
    days_left: float | None = None
    key_type: str = ""
    key_size: int | None = None
    chain: list[str] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.verdict = "invalid"
        self.reasons.append(reason)

    def due(self, reason: str) -> None:
        if self.verdict == "ok":
            self.verdict = "renew"
        self.reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def validate(
    cert_pem: str,
    policy: Policy,
    *,
    key_pem: str = "",
    ca_pem: str = "",
    identity: str = "",
    now: dt.datetime | None = None,
) -> Verdict:
    """Every check on a device certificate; never raises for bad input (it is a reason)."""
    verdict = Verdict()
    now = now or dt.datetime.now(dt.UTC)
    try:
        found = certificates(cert_pem, "client_cert")
    except PemError as exc:
        verdict.fail(str(exc))
        return verdict
    leaf, extra = found[0], found[1:]
    _describe(leaf, verdict)
    _check_validity(leaf, policy, now, verdict)
    _check_chain(leaf, [*extra, *_ca_certs(ca_pem, verdict), *policy.intermediates], policy, now, verdict)
    _check_revocation(leaf, policy, verdict)
    _check_key_policy(leaf, policy, verdict)
    _check_usage(leaf, policy, verdict)
    if key_pem:
        _check_key_match(leaf, key_pem, verdict)
    _check_identity(leaf, policy.bind, identity, verdict)
    return verdict


def _name(name: x509.Name) -> str:
    return name.rfc4514_string()


def _describe(cert: x509.Certificate, verdict: Verdict) -> None:
    verdict.subject = _name(cert.subject)
    verdict.issuer = _name(cert.issuer)
    verdict.serial = f"{cert.serial_number:x}"
    verdict.not_before = cert.not_valid_before_utc.isoformat()
    verdict.not_after = cert.not_valid_after_utc.isoformat()
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        verdict.key_type, verdict.key_size = "RSA", key.key_size
    elif isinstance(key, ec.EllipticCurvePublicKey):
        verdict.key_type, verdict.key_size = f"EC {key.curve.name}", key.curve.key_size
    elif isinstance(key, ed25519.Ed25519PublicKey):
        verdict.key_type = "Ed25519"
    elif isinstance(key, ed448.Ed448PublicKey):
        verdict.key_type = "Ed448"
    else:
        verdict.key_type = type(key).__name__


def _check_validity(leaf: x509.Certificate, policy: Policy, now: dt.datetime, verdict: Verdict) -> None:
    skew = dt.timedelta(seconds=policy.clock_skew_s)
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    verdict.days_left = round((end - now).total_seconds() / 86400, 3)
    if now + skew < start:
        verdict.fail(f"not yet valid: valid from {start.isoformat()}")
        return
    if now - skew > end:
        verdict.fail(f"expired on {end.isoformat()}")
        return
    try:
        threshold = renew_threshold_s(policy.renew_before, (end - start).total_seconds())
    except ValueError as exc:
        verdict.fail(str(exc))
        return
    if (end - now).total_seconds() <= threshold:
        verdict.due(f"expires on {end.isoformat()}, within renew_before {policy.renew_before}")


def _ca_certs(ca_pem: str, verdict: Verdict) -> list[x509.Certificate]:
    if not ca_pem.strip():
        return []
    try:
        return certificates(ca_pem, "ca_cert")
    except PemError as exc:
        verdict.fail(str(exc))
        return []


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _outside(cert: x509.Certificate, now: dt.datetime, skew: dt.timedelta) -> str | None:
    """Why ``cert`` is not valid at ``now`` (with clock skew), or None when it is."""
    if now + skew < cert.not_valid_before_utc:
        return f"not yet valid: valid from {cert.not_valid_before_utc.isoformat()}"
    if now - skew > cert.not_valid_after_utc:
        return f"expired on {cert.not_valid_after_utc.isoformat()}"
    return None


def _pick(
    candidates: list[x509.Certificate], now: dt.datetime, skew: dt.timedelta
) -> tuple[x509.Certificate | None, str | None]:
    """The first issuer valid now; else the first one and why it is not (a renewed anchor or
    intermediate with the same name and key as an expired one is found whatever the order)."""
    for cert in candidates:
        if _outside(cert, now, skew) is None:
            return cert, None
    return (candidates[0], _outside(candidates[0], now, skew)) if candidates else (None, None)


def _check_chain(
    leaf: x509.Certificate,
    pool: Sequence[x509.Certificate],
    policy: Policy,
    now: dt.datetime,
    verdict: Verdict,
) -> None:
    """Walk issuer links from the leaf to an anchor (at most 8 links); every certificate on the
    path, the trust anchor included, must be valid now (an expired root makes every leaf under it
    invalid, as ``openssl verify`` says)."""
    if not policy.anchors:
        verdict.fail("no trust anchors configured (certs/ or certs.bundle): the chain cannot be checked")
        return
    skew = dt.timedelta(seconds=policy.clock_skew_s)
    current, chain = leaf, [_name(leaf.subject)]
    for _ in range(8):
        anchor, why = _pick([a for a in policy.anchors if _issued_by(current, a)], now, skew)
        if anchor is not None:
            if why is not None:
                verdict.fail(f"chain: trust anchor {_name(anchor.subject)} {why}")
                return
            verdict.chain = [*chain, _name(anchor.subject)]
            return
        issuer, why = _pick([c for c in pool if c is not current and _issued_by(current, c)], now, skew)
        if issuer is None:
            verdict.fail(f"chain: no trusted issuer found for {_name(current.issuer)}")
            return
        if not _is_ca(issuer):
            verdict.fail(f"chain: issuer {_name(issuer.subject)} is not a CA")
            return
        if why is not None:
            verdict.fail(f"chain: intermediate {_name(issuer.subject)} {why}")
            return
        current = issuer
        chain.append(_name(current.subject))
    verdict.fail("chain: longer than 8 certificates")


def _check_revocation(leaf: x509.Certificate, policy: Policy, verdict: Verdict) -> None:
    """Revoked on a CRL signed by the leaf's issuer (one of the anchors or intermediates we trust)."""
    issuers = [c for c in (*policy.anchors, *policy.intermediates) if c.subject == leaf.issuer]
    for path in policy.crl_paths:
        if not path.is_file():
            continue
        try:
            crl = x509.load_pem_x509_crl(path.read_bytes())
        except ValueError:
            verdict.fail(f"revocation: {path.name} is not a CRL")
            continue
        if crl.issuer != leaf.issuer or not any(_signed_by(crl, i) for i in issuers):
            continue
        entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
        if entry is not None:
            verdict.fail(f"revoked on {entry.revocation_date_utc.isoformat()}")


def _signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key: Any = issuer.public_key()
    return bool(crl.is_signature_valid(key))


def _check_key_policy(leaf: x509.Certificate, policy: Policy, verdict: Verdict) -> None:
    key = leaf.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < policy.min_rsa_bits:
        verdict.fail(f"weak key: RSA {key.key_size} bits (minimum {policy.min_rsa_bits})")
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in _STRONG_CURVES:
        verdict.fail(f"weak key: EC curve {key.curve.name} (P-256 or stronger required)")
    elif not isinstance(
        key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
    ):
        verdict.fail(f"key type {type(key).__name__} is not allowed")


def _check_usage(leaf: x509.Certificate, policy: Policy, verdict: Verdict) -> None:
    if _is_ca(leaf):
        verdict.fail("a CA certificate used as a device certificate (basicConstraints CA=true)")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            verdict.fail("key usage lacks digitalSignature")
    except x509.ExtensionNotFound:
        pass
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        if policy.require_client_auth:
            verdict.fail("no extended key usage: clientAuth is required")
        return
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        verdict.fail("extended key usage lacks clientAuth")


def _check_key_match(leaf: x509.Certificate, key_pem: str, verdict: Verdict) -> None:
    try:
        key = private_key(key_pem)
    except PemError as exc:
        verdict.fail(str(exc))
        return
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        verdict.fail("the private key does not match the certificate")


def _spki(key: Any) -> bytes:
    return bytes(
        key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _check_identity(leaf: x509.Certificate, bind: Bind, identity: str, verdict: Verdict) -> None:
    if bind == "none" or not identity:
        return
    if bind == "san":
        try:
            names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            verdict.fail("identity: no subjectAltName")
            return
        values = [str(v) for v in names.get_values_for_type(x509.DNSName)]
        values += [str(v) for v in names.get_values_for_type(x509.UniformResourceIdentifier)]
        if identity not in values:
            verdict.fail(f"identity: {bind} not in subjectAltName")
        return
    cns = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if identity not in cns:
        verdict.fail(f"identity: the CN is not the device's {bind}")
