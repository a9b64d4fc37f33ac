"""A local certificate authority: the simulator's PKI, and a development CA in ``certs/dev-ca``.

SuperMQ's certs service (Vault PKI) issues a client certificate whose CN is the thing key; this
CA does the same (EC P-256: fast to generate). ``save``/``load`` keep it on disk for development
(``reactor certs dev-ca``); the key file is written 0600 and ``certs/dev-ca/`` is git-ignored.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class LocalCA:
    """A self-signed root that signs device certificates."""

    def __init__(
        self,
        common_name: str = "SuperMQ Simulator CA",
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        cert: x509.Certificate | None = None,
    ) -> None:
        if key is not None and cert is not None:
            self._key, self.cert = key, cert
            self.pem = cert.public_bytes(serialization.Encoding.PEM).decode()
            return
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
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
            .sign(self._key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(
        self, common_name: str, thing_id: str, ttl_s: float, *, valid_from_s: float = 0.0
    ) -> tuple[str, str, str, str]:
        """(certificate PEM, private key PEM, serial as hex pairs, not-after RFC3339) for a device."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=valid_from_s)
        not_after = now + dt.timedelta(seconds=ttl_s)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(thing_id)]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        hex_serial = f"{serial:x}"
        hex_serial = hex_serial if len(hex_serial) % 2 == 0 else f"0{hex_serial}"
        pairs = ":".join(hex_serial[i : i + 2] for i in range(0, len(hex_serial), 2))
        return pem, key_pem, pairs, not_after.strftime("%Y-%m-%dT%H:%M:%SZ")

    def save(self, directory: Path) -> tuple[Path, Path]:
        """Write ``ca.pem`` and ``ca.key`` (mode 0600) to ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "ca.pem", directory / "ca.key"
        cert_path.write_text(self.pem)
        key_bytes = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_bytes)
        return cert_path, key_path

    @classmethod
    def load(cls, directory: Path) -> LocalCA:
        cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{directory / 'ca.key'}: not an EC key")
        return cls(key=key, cert=cert)

    def revoke(self, directory: Path, serial_hex: str) -> Path:
        """Add a serial to the CA's CRL (``crl.pem`` in ``directory``, re-signed); returns its path."""
        path = directory / "crl.pem"
        revoked: list[x509.RevokedCertificate] = []
        if path.is_file():
            revoked = list(x509.load_pem_x509_crl(path.read_bytes()))
        serial = int(serial_hex.replace(":", ""), 16)
        now = dt.datetime.now(dt.UTC)
        if all(r.serial_number != serial for r in revoked):
            revoked.append(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now)
            .next_update(now + dt.timedelta(days=7))
        )
        for entry in revoked:
            builder = builder.add_revoked_certificate(entry)
        crl = builder.sign(self._key, hashes.SHA256())
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        tmp.replace(path)  # readers see the old CRL or the new one, never half of it
        return path
