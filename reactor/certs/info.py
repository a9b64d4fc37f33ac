"""A certificate's facts for rule conditions (``event.client_cert | certinfo``), cached in bounds.

The cache is keyed by the SHA-256 of the PEM text, not by the text (a 1 MiB "certificate" costs
32 bytes of key), keeps the newest ``CACHE_ENTRIES`` results, and text longer than
``MAX_PEM_CHARS`` is refused unparsed, so the cache holds at most ``CACHE_ENTRIES`` small dicts
whatever the input. ``days_left`` is computed at every call: a cached one would not age.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from reactor.certs.pem import PemError, certificates

#: Longer PEM text is not parsed (a chain of a dozen certificates is about 20,000 characters).
MAX_PEM_CHARS = 64 * 1024
#: Parsed results kept (each a few hundred bytes: subject, issuer, serial, two dates).
CACHE_ENTRIES = 256
#: Subject and issuer are cut to this many characters in the facts.
_MAX_NAME_CHARS = 1024
_DAY_S = 86_400.0

_cache: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
#: The clock ``days_left`` is computed against (tests set it).
clock: Callable[[], float] = time.time


def certinfo(pem: str) -> dict[str, Any]:
    """not_before, not_after, days_left, issuer, subject, serial of the first certificate in
    ``pem`` (untrusted: nothing is verified), or ``error`` with ``days_left`` None."""
    if len(pem) > MAX_PEM_CHARS:
        return {"error": f"certificate: {len(pem)} characters, more than {MAX_PEM_CHARS}", "days_left": None}
    key = hashlib.sha256(pem.encode("utf-8", "surrogatepass")).digest()
    facts = _cache.get(key)
    if facts is None:
        facts = _facts(pem)
        _cache[key] = facts
        if len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    return _aged(facts)


def cache_size() -> int:
    """Results held now (for tests and the README's bound)."""
    return len(_cache)


def _facts(pem: str) -> dict[str, Any]:
    try:
        cert = certificates(pem, "certificate")[0]
    except PemError as exc:
        return {"error": str(exc)[:_MAX_NAME_CHARS], "days_left": None}
    return {
        "subject": cert.subject.rfc4514_string()[:_MAX_NAME_CHARS],
        "issuer": cert.issuer.rfc4514_string()[:_MAX_NAME_CHARS],
        "serial": f"{cert.serial_number:x}",
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "not_after_s": cert.not_valid_after_utc.timestamp(),
    }


def _aged(facts: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in facts.items() if k != "not_after_s"}
    if "not_after_s" in facts:
        out["days_left"] = (facts["not_after_s"] - clock()) / _DAY_S
    return out
