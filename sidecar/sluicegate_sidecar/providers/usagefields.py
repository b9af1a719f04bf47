"""Reading token counts from a provider's usage object, totally: bad figures are flagged, never raised. Pure.

No correct provider reports a negative, fractional, textual or astronomically large token count, or
leaves out a count its API always sends. Such usage is an *anomaly* (fault 30): the adapter keeps
the valid figures, puts 0 where a figure is unusable, and records why and what was reported, so that
accounting can charge a bounded figure and the ledger can keep both for reconciliation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from .base import ReportedUsage, Usage

# The bounded set of reasons (a metric label). Parse-time reasons first; accounting adds those that
# need the request's bounds, and the relay the stream it cut.
AnomalyReason = Literal[
    "malformed", "missing", "not_integer", "negative", "huge", "output_over_cap", "input_over_context"
]
ANOMALY_REASONS: tuple[str, ...] = (
    "malformed", "missing", "not_integer", "negative", "huge", "output_over_cap", "input_over_context"
)  # fmt: skip
# No model reads or writes this many tokens in one request (the largest context windows are ~10^7).
MAX_PLAUSIBLE_TOKENS = 100_000_000
_INT64 = 2**63 - 1  # a reported figure beyond int64 is kept as None (the ledger's JSON is int64)


def valid_count(value: object) -> bool:
    """A token count a correct provider could report: an integer (not a bool) in [0, 10^8]."""
    return type(value) is int and 0 <= value <= MAX_PLAUSIBLE_TOKENS


def _flaw(value: object) -> AnomalyReason | None:
    if value is None:
        return "missing"
    if type(value) is not int:
        return "not_integer"
    if value < 0:
        return "negative"
    if value > MAX_PLAUSIBLE_TOKENS:
        return "huge"
    return None


class UsageReader:
    """Reads the counts of one usage object; ``build`` makes the ``Usage``, flagged if any was bad.

    ``count(key, default)``: ``default`` None means the API always sends the field (absent or null is
    an anomaly); otherwise an absent or null field takes ``default`` (an optional field, or one that
    keeps an earlier stream event's value). A usage that is not a JSON object is ``malformed``.
    """

    __slots__ = ("_fields", "_raw", "anomaly")

    def __init__(self, raw: object) -> None:
        self._fields: Mapping[str, object] = raw if isinstance(raw, dict) else {}
        self._raw: dict[str, int | None] = {}
        self.anomaly: AnomalyReason | None = None if isinstance(raw, dict) else "malformed"

    def count(self, key: str, default: int | None = None) -> int:
        value = self._fields.get(key)
        if value is None and default is not None:
            self._raw[key] = default
            return default
        flaw = _flaw(value)
        self._raw[key] = value if type(value) is int and -_INT64 <= value <= _INT64 else None
        if flaw is None:
            assert type(value) is int
            return value
        self.anomaly = self.anomaly or flaw
        return 0

    def _reported(self, keys: tuple[str, ...]) -> int | None:
        values = [self._raw.get(key) for key in keys]
        if not values or any(v is None for v in values):
            return None
        total = sum(v for v in values if v is not None)
        return total if -_INT64 <= total <= _INT64 else None

    def build(
        self,
        usage: Usage,
        inputs: tuple[str, ...],
        outputs: tuple[str, ...],
        cached: tuple[str, ...] = (),
        written: tuple[str, ...] = (),
    ) -> Usage:
        """``usage`` as read; when anomalous, flagged with the reported figures (sums of the keys named)."""
        if self.anomaly is None:
            return usage
        reported = ReportedUsage(
            self._reported(inputs),
            self._reported(outputs),
            self._reported(cached) if cached else 0,
            self._reported(written) if written else 0,
        )
        return flagged(usage, self.anomaly, reported)


def flagged(usage: Usage, reason: str, reported: ReportedUsage | None = None) -> Usage:
    """``usage`` marked anomalous, keeping the first reason and report found."""
    if reported is None:
        reported = ReportedUsage(
            usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.cache_write_tokens
        )
    return Usage(
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.cache_write_tokens,
        usage.anomaly or reason,
        usage.reported or reported,
        usage.reasoning_tokens,
    )


def sticky(new: Usage | None, previous: Usage | None) -> Usage | None:
    """A stream's latest usage, still flagged if an earlier event's usage was anomalous."""
    if new is None:
        return previous
    if previous is None or previous.anomaly is None or new.anomaly is not None:
        return new
    return flagged(new, previous.anomaly, previous.reported)
