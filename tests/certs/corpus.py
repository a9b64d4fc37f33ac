"""A certificate corpus generated at run time (nothing committed): CAs, intermediates, device certs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Issued:
    cert: x509.Certificate
    key: Any

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return str(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
        )

    def encrypted_key_pem(self, password: bytes = b"secret") -> str:
        return str(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password),
            ).decode()
        )


def issue(
    cn: str,
    issuer: Issued | None = None,
    *,
    ca: bool = False,
    key: Any = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
    san: str | None = None,
) -> Issued:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usages = eku if eku is not None else [ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


class Corpus:
    """The trust material and one device certificate per case."""

    def __init__(self) -> None:
        self.root = issue("Test Root CA", ca=True)
        self.intermediate = issue("Test Intermediate CA", self.root, ca=True)
        self.other_root = issue("Unrelated Root CA", ca=True)
        self.thing_key = "5a4b7c0e-1f2d-4c3b-9a8e-7d6c5b4a3f21"
        self.cases: dict[str, tuple[Issued, dict[str, Any]]] = {}
        add = self._add
        add("valid", issue(self.thing_key, self.root))
        add("through-intermediate", issue(self.thing_key, self.intermediate), chain=True)
        add("expired", issue(self.thing_key, self.root, not_before=NOW - 30 * DAY, not_after=NOW - DAY))
        add(
            "not-yet-valid",
            issue(self.thing_key, self.root, not_before=NOW + 10 * DAY, not_after=NOW + 40 * DAY),
        )
        add(
            "expiring-soon",
            issue(self.thing_key, self.root, not_before=NOW - 300 * DAY, not_after=NOW + 5 * DAY),
        )
        add("wrong-ca", issue(self.thing_key, self.other_root))
        add("weak-rsa", issue(self.thing_key, self.root, key=rsa.generate_private_key(65537, 1024)))
        add("ca-as-device", issue(self.thing_key, self.root, ca=True))
        add("wrong-eku", issue(self.thing_key, self.root, eku=[ExtendedKeyUsageOID.SERVER_AUTH]))
        add("wrong-identity", issue("someone-else", self.root))

    def _add(self, name: str, issued: Issued, *, chain: bool = False) -> None:
        self.cases[name] = (issued, {"chain": chain})

    def pem(self, name: str) -> str:
        issued, options = self.cases[name]
        return issued.pem + (self.intermediate.pem if options["chain"] else "")
