"""Reconciliation against synthetic provider exports with a known, injected gap.

The ledger (data/recon-ledger) holds OpenAI requests on 2026-03-02 and -03, one Anthropic and one mock
request, and one OpenAI request on 2026-03-05 (outside the exports). The OpenAI exports invoice exactly
what the ledger recorded except on 2026-03-03 for gpt-4o, where request r5 was unpriced (recorded at $0):
100k input + 12k output tokens on gpt-4o = 0.25 + 0.12 = $0.37 more on the invoice. They also carry a
$0.05 "web search tool calls" line the ledger cannot know.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import msgspec
import pytest

from sluicegate_contract.ledger import EntryReportedUsage
from sluicegate_contract.ledgerfiles import read_entries
from sluicegate_reports.exports import ExportError, merge_exports, model_key, parse_export
from sluicegate_reports.invoices import reconcile
from sluicegate_reports.savings import catalog_cost

DATA = Path(__file__).parent / "data"
DAY1, DAY2 = date(2026, 3, 2), date(2026, 3, 3)


def load(*names: str):
    return merge_exports([parse_export(name, (DATA / name).read_bytes()) for name in names])


def ledger(provider: str):
    return [e for e in read_entries([DATA / "recon-ledger"]) if e.provider == provider]


def run(export, provider="openai", usd=100_000, pct=0.0):
    return reconcile(
        ledger(provider), export, threshold_micro_usd=usd, threshold_pct=pct, pricer=catalog_cost
    )


def row(result, day, model):
    return next(r for r in result.rows if r.day == day and r.model == model)


def test_reconciliation_finds_the_injected_gap_and_names_its_cause() -> None:
    result = run(load("openai-costs.json", "openai-usage.json"))
    over = [r for r in result.rows if r.over]
    assert [(r.day, r.model, r.gap_micro_usd) for r in over] == [(DAY2, "gpt-4o", 370_000)]
    (cause,) = over[0].causes
    assert "1 unpriced request(s) recorded at $0" in cause
    assert "worth $0.37 at catalog prices" in cause
    assert [f.request_id for f in over[0].flagged] == ["r5"]
    assert result.failed


def test_the_other_day_models_agree_to_the_cent() -> None:
    result = run(load("openai-costs.json", "openai-usage.json"))
    assert row(result, DAY1, "gpt-4o").gap_micro_usd == 0
    assert row(result, DAY1, "gpt-4o-mini").gap_micro_usd == 0
    assert row(result, DAY2, "gpt-4o-mini").gap_micro_usd == 0
    assert row(result, DAY2, "gpt-4o").gap_pct == pytest.approx(370_000 / 720_000 * 100)


def test_estimated_and_unpriced_requests_are_reported_separately() -> None:
    result = run(load("openai-costs.json"))
    assert [(f.request_id, f.cost_basis, f.catalog_micro_usd) for f in result.flagged] == [
        ("r3", "estimated", None),
        ("r5", "unpriced", 370_000),
    ]
    estimated = row(result, DAY1, "gpt-4o-mini")
    assert estimated.causes == ("1 estimated request(s): $0.002100 of the ledger cost is an estimate",)
    assert not estimated.over


def test_a_line_item_only_on_the_invoice_is_named() -> None:
    result = run(load("openai-costs.json"))
    extra = row(result, DAY2, "web search tool calls")
    assert extra.ledger is None and extra.gap_micro_usd == 50_000
    assert extra.causes[0].startswith("only in the export")
    assert not extra.over  # $0.05 is under the $0.10 threshold


def test_a_model_only_in_the_ledger_is_named() -> None:
    doc = json.loads((DATA / "openai-costs.json").read_text())
    doc["data"][1]["results"] = [r for r in doc["data"][1]["results"] if "mini" not in r["line_item"]]
    result = run(parse_export("costs.json", json.dumps(doc).encode()))
    missing = row(result, DAY2, "gpt-4o-mini")
    assert missing.export is None and missing.gap_micro_usd == -60_000
    assert missing.causes[0].startswith("only in the ledger")


def test_tokens_missing_from_the_ledger_are_named() -> None:
    doc = json.loads((DATA / "openai-usage.json").read_text())
    doc["data"][1]["results"][1]["input_tokens"] += 50_000  # a gpt-4o-mini call that bypassed the sidecar
    costs = json.loads((DATA / "openai-costs.json").read_text())
    costs["data"][1]["results"][2]["amount"]["value"] += 0.0075
    export = merge_exports([parse_export("c.json", json.dumps(costs).encode()),
                            parse_export("u.json", json.dumps(doc).encode())])  # fmt: skip
    mini = row(run(export, usd=5_000), DAY2, "gpt-4o-mini")
    assert mini.over and mini.gap_micro_usd == 7_500
    assert mini.causes == ("tokens differ: input 200,000 in the ledger vs 250,000 invoiced (+50,000)",)


def test_the_console_csv_and_the_api_json_agree() -> None:
    from_json, from_csv = run(load("openai-costs.json")), run(load("openai-costs.csv"))
    pairs = lambda result: [(r.day, r.model, r.gap_micro_usd) for r in result.rows]  # noqa: E731
    assert pairs(from_json) == pairs(from_csv)


def test_anthropic_cost_report_amounts_are_cents() -> None:
    export = parse_export("cost.json", (DATA / "anthropic-cost-report.json").read_bytes())
    assert export.provider == "anthropic"
    assert sum(r.cost_micro_usd or 0 for r in export.rows) == 150_000  # "10.0" + "5.0" cents


@pytest.mark.parametrize(
    "names",
    [
        ("anthropic-cost-report.json", "anthropic-usage-report.json"),
        ("anthropic-cost.csv", "anthropic-usage.csv"),
    ],
)
def test_anthropic_exports_reconcile_with_the_ledger(names) -> None:
    result = run(load(*names), provider="anthropic", usd=0)
    (only,) = result.rows
    assert (only.day, only.model, only.gap_micro_usd) == (DAY2, "claude-haiku-4-5", 0)
    assert (only.export.input_tokens, only.export.output_tokens) == (100_000, 10_000)
    assert not result.failed


def test_ledger_requests_outside_the_export_are_counted_not_compared() -> None:
    result = run(load("openai-costs.json"))
    assert result.outside_period == 1
    assert {r.day for r in result.rows} == {DAY1, DAY2}


def test_the_percentage_threshold_must_also_be_exceeded() -> None:
    assert not run(load("openai-costs.json"), usd=100_000, pct=60.0).failed  # 51.4% < 60%
    assert run(load("openai-costs.json"), usd=100_000, pct=50.0).failed


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("Claude 3.5 Sonnet 2024-10-22", "claude-3-5-sonnet"),
        ("Claude Haiku 4.5", "claude-haiku-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("gpt-4.1", "gpt-4-1"),
    ],
)
def test_model_names_are_matched_across_spellings(name, expected) -> None:
    assert model_key(name) == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"data": [{"start_time": 1772409600, "results": [{"amount": {"value": 1, "currency": "usd"}}]}]}',
         "group_by=line_item"),
        (b'{"data": [{"starting_at": "2026-03-03T00:00:00Z", "results": [{"amount": "1", "currency": "USD"}]}]}',
         "group_by[]=description"),
        (b'{"data": [{"start_time": 1772409600, "results": [{"amount": {"value": 1, "currency": "eur"},'
         b' "line_item": "gpt-4o, input"}]}]}', "only USD"),
        (b"day,model,dollars\n2026-03-02,gpt-4o,1\n", "unrecognised CSV columns"),
        (b'{"object": "list"}', "no 'data' list"),
        (b"{not json", "not valid JSON"),
    ],
)  # fmt: skip
def test_an_export_that_cannot_be_reconciled_is_refused_with_the_reason(content, message) -> None:
    with pytest.raises(ExportError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_export("export", content)


def test_exports_of_two_providers_cannot_be_merged() -> None:
    with pytest.raises(ExportError, match="different providers"):
        load("openai-costs.json", "anthropic-cost.csv")


def test_anomalous_requests_are_named_apart_with_their_bounded_charge() -> None:
    entries = ledger("openai")
    odd = [
        msgspec.structs.replace(
            e,
            cost_basis="anomalous",
            anomaly="output_over_cap",
            reported_usage=EntryReportedUsage(input=e.usage.input, output=5_000) if e.usage else None,
        )
        if e.request_id == "r3"
        else e
        for e in entries
    ]
    result = reconcile(
        odd, load("openai-costs.json"), threshold_micro_usd=100_000, threshold_pct=0.0, pricer=catalog_cost
    )
    assert [(f.request_id, f.cost_basis) for f in result.flagged] == [("r3", "anomalous"), ("r5", "unpriced")]
    (cause,) = row(result, DAY1, "gpt-4o-mini").causes
    assert cause.startswith("1 anomalous request(s): the upstream reported usage no correct provider reports")
    assert "$0.002100" in cause
