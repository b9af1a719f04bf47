"""The charge rules for usage no correct upstream reports (fault 30): a bounded figure, never negative,
never above the reservation, the reported figures kept; correct usage is charged as before."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sluicegate_contract.schema import ModelPrice, Rates
from sluicegate_sidecar.accounting import Bounds, attempt_bounds, charge_for
from sluicegate_sidecar.pricing import cost_micro_usd, worst_case_micro_usd
from sluicegate_sidecar.providers.base import ReportedUsage, Usage

PRICE = ModelPrice(source="override", base=Rates(input_per_mtok=1_000_000, output_per_mtok=4_000_000))
PROMPT, CAP = 40, 100
RESERVED = worst_case_micro_usd(PRICE, PROMPT, CAP)
BOUNDS = attempt_bounds(PRICE, PROMPT, RESERVED, CAP, None, 1, 128_000)


def test_the_bounds_are_what_the_reservation_pays_for() -> None:
    assert Bounds(PROMPT, CAP, 128_000) == BOUNDS
    assert attempt_bounds(PRICE, PROMPT, RESERVED, None, None, 1, None).output_tokens is None  # nothing sent
    assert attempt_bounds(None, PROMPT, 0, CAP, None, 3, None).output_tokens == 3 * CAP  # unpriced


def test_output_above_the_cap_is_charged_at_the_cap_and_recorded_with_what_was_reported() -> None:
    charge = charge_for(PRICE, Usage(30, 5_000), RESERVED, PROMPT, None, BOUNDS)
    assert charge.basis == "anomalous" and charge.anomaly == "output_over_cap"
    assert charge.usage == Usage(30, CAP) and charge.reported == ReportedUsage(30, 5_000, 0, 0)
    assert charge.cost_micro_usd == cost_micro_usd(PRICE, Usage(30, CAP)) <= RESERVED


def test_a_bad_count_is_replaced_by_what_the_reservation_assumed() -> None:
    negative = Usage(0, 20, anomaly="negative", reported=ReportedUsage(-5, 20, 0, 0))
    charge = charge_for(PRICE, negative, RESERVED, PROMPT, None, BOUNDS)
    assert charge.usage == Usage(PROMPT, 20) and charge.cost_micro_usd == cost_micro_usd(
        PRICE, Usage(PROMPT, 20)
    )
    unknown_output = Usage(30, 0, anomaly="not_integer", reported=ReportedUsage(30, None, 0, 0))
    assert charge_for(PRICE, unknown_output, RESERVED, PROMPT, None, BOUNDS).usage == Usage(30, CAP)


def test_input_beyond_the_context_window_is_anomalous() -> None:
    charge = charge_for(PRICE, Usage(10**6, 10), RESERVED, PROMPT, None, BOUNDS)
    assert charge.anomaly == "input_over_context" and charge.usage == Usage(PROMPT, 10)


def test_with_nothing_to_bound_the_output_a_bad_output_count_costs_the_reservation() -> None:
    loose = Bounds(PROMPT)
    usage = Usage(30, 0, anomaly="missing", reported=ReportedUsage(30, None, 0, 0))
    assert charge_for(PRICE, usage, RESERVED, PROMPT, None, loose).cost_micro_usd == RESERVED


def test_correct_usage_at_the_cap_is_exact() -> None:
    charge = charge_for(PRICE, Usage(30, CAP), RESERVED, PROMPT, None, BOUNDS)
    assert charge.basis == "exact" and charge.anomaly is None


@given(
    st.integers(-(10**15), 10**15),
    st.integers(-(10**15), 10**15),
    st.integers(-(10**6), 10**6),
    st.sampled_from([None, "negative", "huge", "not_integer", "missing"]),
)
def test_any_reported_usage_is_charged_between_zero_and_the_reservation_unless_it_is_correct(
    input_tokens: int, output_tokens: int, cached: int, flaw: str | None
) -> None:
    valid = flaw is None and min(input_tokens, output_tokens, cached) >= 0
    usage = Usage(max(input_tokens, 0), max(output_tokens, 0), max(cached, 0))
    if not valid:
        usage = Usage(
            max(input_tokens, 0), max(output_tokens, 0), max(cached, 0), 0, flaw or "negative",
            ReportedUsage(input_tokens, output_tokens, cached, 0),
        )  # fmt: skip
    charge = charge_for(PRICE, usage, RESERVED, PROMPT, None, BOUNDS)
    assert charge.cost_micro_usd >= 0
    if charge.basis == "anomalous":
        assert charge.cost_micro_usd <= RESERVED and charge.usage is not None
        assert 0 <= charge.usage.output_tokens <= CAP
    else:
        assert valid and usage.output_tokens <= CAP and usage.input_tokens <= 128_000
