"""Reading ``Retry-After`` / ``retry-after-ms`` and jittered backoff. Pure.

Time is passed in (``now``) and randomness too (``rng``); nothing here sleeps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_SECONDS = 600.0
_MAX_HEADER_CHARS = 64
_DIGITS = frozenset("0123456789")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by lower-case name, from a case-insensitive mapping or a plain dict."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, item in headers.items():
        if key.lower() == name:
            return item
    return None


def _number(text: str) -> float | None:
    """A non-negative decimal ("3", "1.5"), or None: no sign, exponent, inf or nan."""
    whole, _, fraction = text.partition(".")
    if not whole or not set(whole) <= _DIGITS or (fraction and not set(fraction) <= _DIGITS):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _date_delay(text: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def parse_retry_after(
    headers: Mapping[str, str], now: datetime, cap: float = MAX_RETRY_AFTER_SECONDS
) -> float | None:
    """Seconds the upstream asks us to wait, or None when it says nothing usable.

    ``retry-after-ms`` (OpenAI) wins over ``retry-after``; ``retry-after`` is delay-seconds (an
    integer, or a decimal as some providers send) or an HTTP-date (a past date means 0). Garbage,
    signs, exponents and over-long values are ignored; the result is capped at ``cap``.
    """
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None and len(raw_ms) <= _MAX_HEADER_CHARS:
        millis = _number(raw_ms.strip())
        if millis is not None:
            return min(millis / 1000.0, cap)
    raw = _header(headers, "retry-after")
    if raw is None or len(raw) > _MAX_HEADER_CHARS:
        return None
    text = raw.strip()
    seconds = _number(text)
    if seconds is None and text and not text[0].isdigit():
        seconds = _date_delay(text, now)
    return None if seconds is None else min(seconds, cap)


def backoff(attempt: int, rng: random.Random, base: float = 0.5, cap: float = 8.0) -> float:
    """A jittered wait before retry ``attempt`` (0 for the first): uniform in [d/2, d], d = base·2^n ≤ cap."""
    ceiling = min(cap, base * 2.0 ** min(max(attempt, 0), 32))
    return ceiling / 2.0 + rng.random() * ceiling / 2.0
