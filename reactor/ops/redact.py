"""The one redaction layer: secrets masked by key name and by value before anything is written.

Applied to log events, dead-letter entries, dry-run output and (later) the audit trail. By key:
any key that names a secret (``client_key``, ``thing_key``, ``external_key``, ``secret``,
``password``, ``token``, ``authorization``, ...). By value: PEM private keys (also the one-line
and escaped-newline forms SuperMQ events carry), JWTs and bearer credentials, wherever they sit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(
    r"(^|_|-|\b)(key|secret|password|passwd|pass|token|credentials?|authorization|api_key|"
    r"access_token|refresh_token|private_key|client_key|thing_key|external_key|enc_key)($|_|-|\b)",
    re.I,
)
_PUBLIC_KEYS = frozenset({"key_type", "key_size", "public_key", "key_usage", "keyusage"})
_PEM_PRIVATE = re.compile(
    r"-----BEGIN ((?:ENCRYPTED |RSA |EC |DSA |OPENSSH )?PRIVATE KEY)-----.*?-----END \1-----", re.S
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_AUTH_HEADER = re.compile(
    r"\b(Bearer|Basic|Authorization:\s*(?:Thing|Client))\s+[A-Za-z0-9._~+/=-]{8,}", re.I
)


def is_secret_key(name: str) -> bool:
    """Whether a field or parameter named ``name`` holds a secret."""
    return name.lower() not in _PUBLIC_KEYS and _SECRET_KEY.search(name) is not None


def redact_text(text: str) -> str:
    """``text`` with private keys, JWTs and credentials in auth headers masked."""
    if "-----BEGIN" in text:
        text = _PEM_PRIVATE.sub(
            lambda m: f"-----BEGIN {m.group(1)}-----{MASK}-----END {m.group(1)}-----", text
        )
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    return _AUTH_HEADER.sub(lambda m: f"{m.group(1)} {MASK}", text)


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` with every secret masked (by its key, or by what it looks like)."""
    if key and is_secret_key(key) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    return value
