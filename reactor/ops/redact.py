"""The one redaction layer: secrets masked by key name and by value before anything is written.

Applied to log events, dead-letter entries, dry-run output and (later) the audit trail. By key:
any key that names a secret (``client_key``, ``thing_key``, ``external_key``, ``secret``,
``password``, ``token``, ``authorization``, ...). By value: PEM private keys (also the one-line
and escaped-newline forms SuperMQ events carry), JWTs and bearer credentials, wherever they sit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

MASK = "***"
_MIN_SECRET_LEN = 6
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


@lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """Whether a field or parameter named ``name`` holds a secret."""
    return name.lower() not in _PUBLIC_KEYS and _SECRET_KEY.search(name) is not None


def secret_values(fields: Mapping[str, Any]) -> frozenset[str]:
    """The values of the secret-named fields of an event: masked wherever they show up later
    (a rule that writes a thing key into a log message cannot be caught by its look)."""
    found = {str(v) for k, v in fields.items() if isinstance(v, str | int) and is_secret_key(k)}
    return frozenset(v for v in found if len(v) >= _MIN_SECRET_LEN)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with private keys, JWTs, credentials in auth headers and the given values masked."""
    if not text:
        return text
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if "-----BEGIN" in text:
        text = _PEM_PRIVATE.sub(
            lambda m: f"-----BEGIN {m.group(1)}-----{MASK}-----END {m.group(1)}-----", text
        )
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    # The header pattern needs one of these words; in ASCII text without them the regex is
    # skipped (non-ASCII text always runs it: re.I folds some letters that lower() does not).
    lowered = text.lower()
    if not text.isascii() or "bearer" in lowered or "basic" in lowered or "authorization" in lowered:
        return _AUTH_HEADER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return text


def _json_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return None
    try:
        parsed = json.loads(stripped)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def redact(value: Any, key: str = "", secrets: frozenset[str] = frozenset()) -> Any:
    """A copy of ``value`` with every secret masked (by its key, by what it looks like, or
    because it is one of the known ``secrets``)."""
    if key and is_secret_key(key) and value not in (None, ""):
        return MASK
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return _redact_str(value, secrets)
    if isinstance(value, Mapping):
        return {k: redact(v, str(k), secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, "", secrets) for v in value]
    return value


def _redact_str(value: str, secrets: frozenset[str]) -> str:
    nested = _json_object(value)
    if nested is not None:  # a JSON document in a field (Redis's "data" field): mask by key inside
        return json.dumps(redact(nested, "", secrets), separators=(",", ":"))
    return redact_text(value, secrets)
