"""The simulator's certificate authority: real X.509 certificates, generated at run time.

SuperMQ's certs service (Vault PKI) issues a client certificate whose CN is the thing key. The
simulator does the same with an in-memory EC P-256 CA (fast to generate; nothing is written to
disk), so that certificate validation and rotation are exercised on real certificates.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class SimulatorCA:
    """A self-signed root that signs device certificates."""

    def __init__(self, common_name: str = "SuperMQ Simulator CA") -> None:
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
