"""Money as both sides count it: integer micro-USD, fractions in parts per million."""

from __future__ import annotations

MICRO_USD = 1_000_000  # micro-USD in one USD
PPM = 1_000_000  # parts per million in a whole


def usd(micro_usd: int) -> str:
    """Micro-USD as a USD string with 6 decimals (``1234567`` → ``"1.234567"``)."""
    sign = "-" if micro_usd < 0 else ""
    whole, frac = divmod(abs(micro_usd), MICRO_USD)
    return f"{sign}{whole}.{frac:06d}"
