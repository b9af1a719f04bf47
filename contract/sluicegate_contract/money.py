"""Money as both sides count it: integer micro-USD, fractions in parts per million."""

from __future__ import annotations

MICRO_USD = 1_000_000  # micro-USD in one USD
PPM = 1_000_000  # parts per million in a whole
