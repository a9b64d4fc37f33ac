"""Durations as operators and SuperMQ write them, parsed in one place.

``duration_s``: one number and one unit, ``30d``, ``720h``, ``90m``, ``10s`` (``renew_before``,
``--since``). ``parse_go_duration``: Go's form, ``2400h``, ``1h30m`` (what SuperMQ's certs service
takes as a ttl). ``renew_threshold_s``: ``renew_before``, a duration or a percentage of a
certificate's lifetime, as seconds before its expiry.
"""

from __future__ import annotations

import re

_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIMPLE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")


def duration_s(text: str) -> float:
    """``30d`` / ``720h`` / ``90m`` / ``10s`` → seconds; ``ValueError`` otherwise."""
    match = _SIMPLE.match(text.strip())
    if match is None:
        raise ValueError(f"not a duration like 30d, 720h, 90m or 10s: {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_go_duration(text: str) -> float:
    """``2400h``, ``90m``, ``1h30m``, ``10s`` → seconds (what the certs service accepts as ttl)."""
    total, number = 0.0, ""
    for ch in text.strip():
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in "hms" and number:
            total += float(number) * _UNIT_S[ch]
            number = ""
        else:
            raise ValueError(f"invalid duration {text!r}")
    if number or total <= 0:
        raise ValueError(f"invalid duration {text!r}")
    return total


def renew_threshold_s(renew_before: str, lifetime_s: float) -> float:
    """``renew_before`` as seconds before expiry: ``30d``, ``720h``, ``90m``, or ``33%`` of the lifetime."""
    text = renew_before.strip()
    if text.endswith("%"):
        return lifetime_s * float(text[:-1]) / 100
    try:
        return duration_s(text)
    except ValueError:
        raise ValueError(
            f"renew_before: {renew_before!r} is not a duration (30d, 720h) or a percentage (33%)"
        ) from None
