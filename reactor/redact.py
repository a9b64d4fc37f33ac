"""The second net: secrets masked by key name and by value before anything is written.

The first net is the type (``reactor.secrets.Secret``: a secret is never text, whatever a
template does with it); this one catches what is still text. Applied to log events,
dead-letter entries, dry-run output, the audit trail, status and history. A ``Secret`` is the
mask. By key:
any key that names a secret (``client_key``, ``thing_key``, ``external_key``, ``secret``,
``password``, ``token``, ``authorization``, ...). By value: PEM private keys (also the one-line
and escaped-newline forms SuperMQ events carry), JWTs, bearer credentials and the password of a
URL (``redis://:pw@host``, ``http://user:pw@host``), wherever they sit; and the known secret
values of the event (``secret_values``): those of six characters or more wherever they appear,
shorter ones (from three) where they stand alone (a word of their own).

Total: it never raises on any content. Text comes out encodable as UTF-8 (lone surrogates
escaped), containers nested deeper than ``MAX_DEPTH`` are masked whole, a JSON document in a
string that is too deep to parse has its secret-named string members masked textually.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from reactor.secrets import MASK, Secret

__all__ = [
    "MASK",
    "MIN_SHORT_LEN",
    "is_secret_key",
    "redact",
    "redact_json_text",
    "redact_text",
    "secret_values",
    "utf8_safe",
]

#: Containers nested deeper than this are masked whole (far beyond events.max_depth's 128).
MAX_DEPTH = 160
_MIN_SECRET_LEN = 6
#: Known secret values shorter than this are not masked by value (one or two characters would
#: mask every "1" of a log line); they are masked by their type and key name all the same.
MIN_SHORT_LEN = 3
#: Names up to this long are cached by ``is_secret_key`` (longer ones, never SuperMQ's, are not).
_CACHED_NAME_CHARS = 128
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
#: ``scheme://user:password@`` (and ``scheme://:password@``): the password masked.
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)([^\s/]+)@")  # to the last '@'
_AUTH_HEADER = re.compile(
    r"\b(Bearer|Basic|Authorization:\s*(?:Thing|Client))\s+[A-Za-z0-9._~+/=-]{8,}", re.I
)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def shown_url(url: str) -> str:
    """``url`` as a message may show it: any userinfo (``user:password@``) masked, with or
    without a scheme (``bob:pw@proxy:3128`` reads as curl and httpx read it), up to the last '@'
    (a password may hold one): ``socks5://***@h:1080``, ``***@proxy:3128``. An '@' further on
    (in a path) masks more, never less."""
    scheme = _SCHEME.match(url)
    start = scheme.end() if scheme else 0
    at = url.rfind("@", start)
    return url if at < 0 else f"{url[:start]}{MASK}{url[at:]}"


def is_secret_key(name: str) -> bool:
    """Whether a field or parameter named ``name`` holds a secret."""
    return _is_secret_key(name) if len(name) <= _CACHED_NAME_CHARS else _secret_name(name)


@lru_cache(maxsize=4096)  # at most 4096 names of at most _CACHED_NAME_CHARS: bounded memory
def _is_secret_key(name: str) -> bool:
    return _secret_name(name)


def _secret_name(name: str) -> bool:
    return name.lower() not in _PUBLIC_KEYS and _SECRET_KEY.search(name) is not None


def utf8_safe(text: str) -> str:
    """``text`` encodable as UTF-8: lone surrogates (from JSON's ``"\\ud800"``) as ``\\ud800`` escapes."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def secret_values(fields: Mapping[str, Any]) -> frozenset[str]:
    """The values of the secret-named fields of an event: masked wherever they show up later
    (a rule that writes a thing key into a log message cannot be caught by its look)."""
    found = {
        v.reveal() if isinstance(v, Secret) else str(v)
        for k, v in fields.items()
        if isinstance(v, str | int | Secret) and is_secret_key(k)
    }
    return frozenset(v for v in found if len(v) >= MIN_SHORT_LEN and v != MASK)


def _mask_value(text: str, secret: str) -> str:
    if len(secret) >= _MIN_SECRET_LEN:
        return text.replace(secret, MASK)
    # A short secret is masked where it stands alone: not inside longer words ("ab" in "table").
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", MASK, text)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with private keys, JWTs, credentials in auth headers and the given values masked
    (and encodable as UTF-8)."""
    if not text:
        return text
    text = utf8_safe(text)
    for secret in secrets:
        if secret in text:
            text = _mask_value(text, secret)
    if "://" in text and "@" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}@", text)
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


class _TooDeepError(Exception):
    """A JSON document in a string nested past ``MAX_DEPTH``."""


def _json_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return None
    try:
        parsed = json.loads(stripped)
    except ValueError:
        return None
    except RecursionError:
        raise _TooDeepError from None
    return parsed if isinstance(parsed, dict) else None


#: ``"name": "value"`` in JSON text, for documents too deep to parse.
_JSON_MEMBER = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:\s*)"((?:[^"\\]|\\.)*)(?:"|$)')


def _mask_json_members(text: str) -> str:
    """Secret-named string members of JSON ``text`` masked, without parsing it."""
    return _JSON_MEMBER.sub(
        lambda m: f'"{m.group(1)}"{m.group(2)}"{MASK}"' if is_secret_key(m.group(1)) else m.group(0), text
    )


def redact_json_text(text: str, secrets: Iterable[str] = ()) -> str:
    """JSON ``text`` masked as it is written (spacing kept): by look, by value, and its
    secret-named string members (parsed or not)."""
    return _mask_broken_json(redact_text(text, secrets))


def _mask_broken_json(text: str) -> str:
    """Text that looks like JSON but does not parse (a malformed entry): its secret-named string
    members masked all the same."""
    if '"' in text and ":" in text:
        return _mask_json_members(text)
    return text


def redact(value: Any, key: str = "", secrets: frozenset[str] = frozenset(), _depth: int = 0) -> Any:
    """A copy of ``value`` with every secret masked (by its key, by what it looks like, or
    because it is one of the known ``secrets``); never raises."""
    if isinstance(value, Secret) or (key and is_secret_key(key) and value not in (None, "")):
        return MASK
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return _redact_str(value, secrets, _depth)
    if isinstance(value, Mapping | list | tuple) and _depth >= MAX_DEPTH:
        return f"{MASK} (nested deeper than {MAX_DEPTH})"
    if isinstance(value, Mapping):
        return {utf8_safe(str(k)): redact(v, str(k), secrets, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, "", secrets, _depth + 1) for v in value]
    return value


def _redact_str(value: str, secrets: frozenset[str], depth: int) -> str:
    try:
        nested = _json_object(value)
    except _TooDeepError:
        return _mask_json_members(redact_text(value, secrets))
    if nested is not None:  # a JSON document in a field (Redis's "data" field): mask by key inside
        masked = redact(nested, "", secrets, depth + 1)
        try:
            return json.dumps(masked, separators=(",", ":"))
        except RecursionError:
            return _mask_json_members(redact_text(value, secrets))
    return _mask_broken_json(redact_text(value, secrets))
