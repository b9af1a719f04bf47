"""Savings analysis on a synthetic ledger whose answers are computed by hand below.

Catalog prices used (genai-prices, March 2026): gpt-4o $2.50 in / $10 out / $1.25 cached per M tokens,
gpt-4o-mini $0.15 / $0.60 / $0.075, claude-haiku-4-5 $1 / $5. The ledger (data/savings-ledger):

s1 search tier:premium DOWNGRADE → mini 200k/50k: actual 0.03+0.03 = $0.060; asked (gpt-4o) 0.50+0.50 = $1.00
s2 search auto → mini 200k/50k: $0.060; asked $1.00
s3 chat openai/gpt-4o pinned 200k/50k: $1.00; asked $1.00 (the model that served)
s4 chat tier:standard LIGHT_ONLY → mini 100k (40k cached)/20k: 60k*0.15+40k*0.075+20k*0.6 = $0.024;
   asked 60k*2.5+40k*1.25+20k*10 = $0.40
s5 chat auto, estimated, mini 100k/10k: $0.021; asked 0.25+0.10 = $0.35
s6 search mock/echo, unpriced: left out
s7 chat claude/claude-haiku-4-5 pinned (next day) 100k/10k: $0.15; asked $0.15; on gpt-4o $0.35

actual 0.06+0.06+1.00+0.024+0.021+0.15 = $1.315; asked 1+1+1+0.40+0.35+0.15 = $3.90; saved $2.585;
all on gpt-4o: 1+1+1+0.40+0.35+0.35 = $4.10, saved $2.785.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest

from sluicegate_contract.ledger import EntryDecision, EntryReportedUsage, EntryResolution, EntryUsage
from sluicegate_contract.ledgerfiles import read_entries
from sluicegate_reports.savings import (
    ModelRef,
    analyze_savings,
    catalog_cost,
    enforced_verdict,
    most_expensive_model,
)

DATA = Path(__file__).parent / "data"
UTC_ZONE = ZoneInfo("UTC")


@pytest.fixture(scope="module")
def entries():
    return list(read_entries([DATA / "savings-ledger"]))


def test_savings_equal_the_hand_computed_figure(entries) -> None:
    report = analyze_savings(entries, by="team", window="day", tz=UTC_ZONE)
    total = report.total
    assert report.baseline == ModelRef("openai", "gpt-4o")
    assert total.actual_micro_usd == 1_315_000
    assert total.asked_micro_usd == 3_900_000
    assert total.saved_micro_usd == 2_585_000
    assert total.premium_micro_usd == 4_100_000
    assert total.saved_vs_premium_micro_usd == 2_785_000


def test_requests_moved_by_downgrade_light_only_and_auto_are_counted(entries) -> None:
    total = analyze_savings(entries, by="team", window="day", tz=UTC_ZONE).total
    assert (total.requests, total.downgraded, total.light_only, total.auto) == (7, 1, 1, 2)


def test_savings_are_grouped_by_team_and_day(entries) -> None:
    rows = analyze_savings(entries, by="team", window="day", tz=UTC_ZONE).rows
    found = {(r.window, r.group): (r.actual_micro_usd, r.asked_micro_usd) for r in rows}
    assert found == {
        ("2026-03-02", "search"): (120_000, 2_000_000),
        ("2026-03-02", "chat"): (1_045_000, 1_750_000),
        ("2026-03-03", "chat"): (150_000, 150_000),
    }


def test_a_pinned_request_saves_nothing_against_what_it_asked_for(entries) -> None:
    rows = analyze_savings(entries, by="model", window="month", tz=UTC_ZONE).rows
    pinned = {r.group: r for r in rows}
    assert pinned["openai/gpt-4o"].saved_micro_usd == 0
    assert pinned["anthropic/claude-haiku-4-5"].saved_micro_usd == 0
    assert pinned["anthropic/claude-haiku-4-5"].saved_vs_premium_micro_usd == 200_000


def test_a_pinned_alias_counts_as_the_model_that_served_it(entries) -> None:
    alias = msgspec.structs.replace(entries[2], requested_model="oai/smart")  # s3, an alias of gpt-4o
    total = analyze_savings([alias], by="team", window="day", tz=UTC_ZONE).total
    assert (total.compared, total.asked_micro_usd, total.saved_micro_usd) == (1, 1_000_000, 0)


def test_a_tier_model_replaces_the_baseline_for_that_tier(entries) -> None:
    mini = ModelRef("openai", "gpt-4o-mini")
    report = analyze_savings(entries, by="team", window="day", tz=UTC_ZONE, tier_models={"standard": mini})
    # s4 (tier:standard) is now compared with gpt-4o-mini, the model that served it: $0.40 → $0.024
    assert report.total.asked_micro_usd == 3_900_000 - 400_000 + 24_000


def test_an_explicit_baseline_is_used_for_auto_and_tier_requests(entries) -> None:
    haiku = ModelRef("anthropic", "claude-haiku-4-5")
    report = analyze_savings(entries, by="team", window="day", tz=UTC_ZONE, baseline=haiku)
    # s1, s2 on haiku: 0.20+0.25 = $0.45 each; s4: 60k*1+40k*0.1+20k*5 = $0.164; s5: 0.10+0.05 = $0.15
    assert report.total.asked_micro_usd == 450_000 + 450_000 + 1_000_000 + 164_000 + 150_000 + 150_000
    assert report.baseline_source == "--baseline"


def test_unpriced_requests_are_left_out_and_listed_apart(entries) -> None:
    report = analyze_savings(entries, by="team", window="day", tz=UTC_ZONE)
    assert report.total.unpriced == 1
    assert [(i.request_id, i.model) for i in report.left_out] == [("s6", "mock/echo")]
    assert "no price" in report.left_out[0].reason


def test_estimated_requests_are_compared_but_counted_apart(entries) -> None:
    total = analyze_savings(entries, by="team", window="day", tz=UTC_ZONE).total
    assert (total.estimated, total.estimated_micro_usd) == (1, 21_000)


def test_the_verdict_counted_is_the_enforced_one_not_the_shadow() -> None:
    assert enforced_verdict("LIGHT_ONLY; shadow=BLOCK") == "LIGHT_ONLY"
    assert enforced_verdict("allow") == "allow"


def test_the_default_baseline_is_the_most_expensive_model_served(entries) -> None:
    assert most_expensive_model(entries) == ModelRef("openai", "gpt-4o")


def test_windows_follow_the_timezone_and_calendar(entries) -> None:
    tokyo = analyze_savings(entries, by="team", window="week", tz=ZoneInfo("Asia/Tokyo"))
    assert {r.window for r in tokyo.rows} == {"2026-W10"}
    month = analyze_savings(entries, by="tier", window="month", tz=UTC_ZONE)
    assert {r.window for r in month.rows} == {"2026-03"}


def test_a_request_without_usage_is_left_out(entries) -> None:
    broken = msgspec.structs.replace(entries[0], usage=None, cost_basis="estimated")
    report = analyze_savings([broken], by="team", window="day", tz=UTC_ZONE)
    assert report.total.compared == 0
    assert report.left_out[0].reason == "no token usage recorded"


def test_catalog_prices_are_dated_by_the_request_time() -> None:
    # claude-opus-4-6 charged $10/M input above 200k prompt tokens until 2026-03-13, $5/M after.
    usage = EntryUsage(input=300_000, output=0)
    opus = ModelRef("anthropic", "claude-opus-4-6")
    assert catalog_cost(opus, usage, datetime(2026, 3, 12, tzinfo=UTC)) == 3_000_000
    assert catalog_cost(opus, usage, datetime(2026, 3, 14, tzinfo=UTC)) == 1_500_000


def test_catalog_cost_knows_no_mock_or_unknown_model() -> None:
    when = datetime(2026, 3, 2, tzinfo=UTC)
    assert catalog_cost(ModelRef("mock", "echo"), EntryUsage(input=1, output=1), when) is None
    assert catalog_cost(ModelRef("openai", "no-such-model"), EntryUsage(input=1, output=1), when) is None


def test_grouping_by_an_unknown_dimension_is_refused(entries) -> None:
    with pytest.raises(ValueError, match="cannot group by"):
        analyze_savings(entries, by="colour", window="day", tz=UTC_ZONE)


def test_an_anomalous_request_is_compared_at_its_bounded_figures_and_counted_as_estimated(entries) -> None:
    reported = EntryReportedUsage(input=None, output=10**12)
    odd = msgspec.structs.replace(entries[0], cost_basis="anomalous", reported_usage=reported, anomaly="huge")
    report = analyze_savings([odd], by="team", window="day", tz=UTC_ZONE)
    assert report.total.compared == 1 and report.total.estimated == 1
    assert report.total.actual_micro_usd == entries[0].cost_micro_usd


def test_version_2_entries_are_counted_by_their_recorded_resolution_and_decision(entries) -> None:
    """The same requests written as version 2 give the same figures, with nothing left to parse:
    the requested model names only the model that served, the verdict text is gone."""

    def v2(entry):
        requested = entry.requested_model
        if requested == "auto":
            resolution = EntryResolution(kind="auto", tier=entry.tier)
        elif requested.startswith("tier:"):
            resolution = EntryResolution(kind="tier", tier=requested.removeprefix("tier:"))
        else:
            return msgspec.structs.replace(entry, v=2, decision=EntryDecision(action="allow"))
        action = entry.verdict.split(";")[0]
        return msgspec.structs.replace(
            entry, v=2, resolution=resolution, decision=EntryDecision(action=action),
            requested_model=f"{entry.connection}/{entry.model}", verdict="",
        )  # fmt: skip

    before = analyze_savings(entries, by="team", window="day", tz=UTC_ZONE).total
    after = analyze_savings([v2(e) for e in entries], by="team", window="day", tz=UTC_ZONE).total
    assert (after.requests, after.downgraded, after.light_only, after.auto) == (7, 1, 1, 2)
    assert (after.actual_micro_usd, after.asked_micro_usd) == (
        before.actual_micro_usd,
        before.asked_micro_usd,
    )
