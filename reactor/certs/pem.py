"""PEM as SuperMQ events really carry it: bodies on one line, escaped newlines, keys where
certificates belong. Everything is parsed with ``cryptography``; this module only restores the
text to PEM and names what it holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_B64 = re.compile(r"[^A-Za-z0-9+/=]")


class PemError(ValueError):
    """Text that is not the PEM it should be; the message says what it is instead."""


@dataclass(frozen=True)
class Block:
    label: str
    pem: bytes


def blocks(text: str) -> list[Block]:
    """Every PEM block in ``text``, re-wrapped at 64 columns whatever the input's line breaks."""
    text = text.replace("\\r", "").replace("\\n", "\n")
    out = []
    for match in _BLOCK.finditer(text):
        label, body = match.group(1).strip(), _B64.sub("", match.group(2))
        lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        out.append(Block(label, f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode()))
    return out


def certificates(text: str, what: str = "certificate") -> list[x509.Certificate]:
    """The certificates in ``text`` (leaf first); ``PemError`` naming what was there instead."""
    found = blocks(text)
    if not found:
        raise PemError(f"{what}: no PEM block (not a certificate)" if text.strip() else f"{what}: empty")
    certs = [b for b in found if b.label == "CERTIFICATE"]
    if not certs:
        labels = {b.label for b in found}
        if any("PRIVATE KEY" in label for label in labels):
            kind = "an encrypted private key" if "ENCRYPTED PRIVATE KEY" in labels else "a private key"
            raise PemError(f"{what}: holds {kind}, not a certificate")
        raise PemError(f"{what}: holds {', '.join(sorted(labels))}, not a certificate")
    out = []
    for block in certs:
        try:
            out.append(x509.load_pem_x509_certificate(block.pem))
        except ValueError as exc:
            raise PemError(f"{what}: a CERTIFICATE block that does not parse ({exc})") from None
    return out


def private_key(text: str, password: bytes | None = None) -> PrivateKeyTypes:
    """The private key in ``text``; ``PemError`` for an encrypted key without its passphrase or garbage."""
    found = [b for b in blocks(text) if "PRIVATE KEY" in b.label]
    if not found:
        raise PemError("key: no PRIVATE KEY block")
    block = found[0]
    if "ENCRYPTED" in block.label and password is None:
        raise PemError("key: encrypted (PKCS#8 with a passphrase); the key cannot be checked")
    try:
        return serialization.load_pem_private_key(block.pem, password=password)
    except (ValueError, TypeError) as exc:
        raise PemError(f"key: does not parse ({exc})") from None
