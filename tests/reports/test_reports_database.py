"""Reports on the fleet ledger in PostgreSQL say what they say on the same entries in files: the
reconciliation finds the injected gap, the summary and the export match."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import psycopg

from sluicegate_contract.ledger import (
    GENESIS,
    Entry,
    EntryDecision,
    EntryResolution,
    chain_entry,
    decode_entry,
    entry_line,
    parse_time,
)
from sluicegate_contract.ledgerfiles import file_name, read_entries
from sluicegate_contract.schema import ModelPrice, PriceTier, Rates
from sluicegate_operator.authority.store import Store
from sluicegate_reports.formats import render_json
from sluicegate_reports.ledger_cli import main as ledger_main
from sluicegate_reports.report_cli import main as report_main
from sluicegate_reports.savings import ModelRef, analyze_savings
from sluicegate_reports.savingsplan import book_pricer
from sluicegate_reports.views import savings_json
from tests.reports.test_reports_cli import DATA, LEDGER, NOW
from tests.support.ledger_db import load_ledgers
from tests.support.postgres import database_url, postgres_server

__all__ = ["database_url", "postgres_server"]


def run(main, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(argv), out, NOW) if main is report_main else main(list(argv), out)
    return status, out.getvalue()


def test_reconcile_on_the_database_finds_the_injected_gap_as_on_files(database_url: str, capsys) -> None:
    load_ledgers(database_url, {"sidecar-a": Path(LEDGER)})
    exports = ["--export", str(DATA / "openai-costs.json"), "--export", str(DATA / "openai-usage.json")]
    on_files = run(report_main, "reconcile", LEDGER, *exports, "--threshold-usd", "0.10")
    files_err = capsys.readouterr().err
    on_database = run(
        report_main, "reconcile", "--database-url", database_url, *exports, "--threshold-usd", "0.10"
    )
    assert on_database == on_files
    assert on_database[0] == 1
    assert "! 2026-03-03  gpt-4o" in on_database[1]
    assert capsys.readouterr().err == files_err
    assert "worth $0.37 at catalog prices" in files_err


def test_ledger_summary_and_export_on_the_database_match_the_files(database_url: str) -> None:
    load_ledgers(database_url, {"sidecar-a": Path(LEDGER)})
    for by in ("team", "model", "endCustomer"):
        for window in ("day", "week", "month"):
            args = ["summary", "--by", by, "--window", window, "--tz", "Europe/Berlin"]
            assert run(ledger_main, *args, "--database-url", database_url) == run(ledger_main, *args, LEDGER)
    assert run(ledger_main, "export", "--database-url", database_url) == run(ledger_main, "export", LEDGER)


# The savings ledger's models at their catalog rates (see test_reports_savings), as a config's price book.
BOOK = {
    ("oai", "openai", "gpt-4o"): Rates(
        input_per_mtok=2_500_000, output_per_mtok=10_000_000, cached_input_per_mtok=1_250_000
    ),
    ("oai", "openai", "gpt-4o-mini"): Rates(
        input_per_mtok=150_000, output_per_mtok=600_000, cached_input_per_mtok=75_000
    ),
    ("claude", "anthropic", "claude-haiku-4-5"): Rates(input_per_mtok=1_000_000, output_per_mtok=5_000_000),
}


def record_book(
    url: str,
    prices: dict[tuple[str, str, str], ModelPrice] | None = None,
    serial: int = 7,
    recorded_at: datetime | None = None,
) -> dict[ModelRef, ModelPrice]:
    """Record a config's price book (``BOOK`` by default) as the authority does (at ``recorded_at``)."""
    if prices is None:
        prices = {key: ModelPrice(source="catalog", base=rates) for key, rates in BOOK.items()}
    rows = [
        (conn, kind, model, None, msgspec.json.encode(price).decode())
        for (conn, kind, model), price in prices.items()
    ]

    async def run() -> None:
        store = await Store.connect(url)
        try:
            await store.record_prices("shop", serial, rows)
        finally:
            await store.close()

    asyncio.run(run())
    if recorded_at is not None:  # as if the authority had seen this serial then
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE ledger_prices SET recorded_at = %s WHERE serial = %s", (recorded_at, serial))
    return {ModelRef(kind, model): price for (_, kind, model), price in prices.items()}


def history(
    *books: tuple[datetime, dict[ModelRef, ModelPrice]],
) -> dict[ModelRef, list[tuple[datetime, ModelPrice]]]:
    """Price books by when each was recorded, as ``savingsplan.book_pricer`` takes them."""
    found: dict[ModelRef, list[tuple[datetime, ModelPrice]]] = {}
    for since, book in books:
        for ref, price in book.items():
            found.setdefault(ref, []).append((since, price))
    return found


def test_savings_on_the_database_price_with_the_configs_price_book_as_the_files_do(database_url: str) -> None:
    load_ledgers(database_url, {"sidecar-a": DATA / "savings-ledger"})
    book = record_book(database_url)
    entries = list(read_entries([DATA / "savings-ledger"]))
    cases = [
        ("--by", "team", "--window", "day"),
        ("--by", "model", "--window", "month", "--tz", "Europe/Berlin"),
        ("--by", "tier", "--window", "week", "--baseline", "openai/gpt-4o-mini"),
        ("--by", "team", "--tier-model", "standard=oai/gpt-4o-mini", "--since", "2026-03-02"),
    ]
    for case in cases:
        status, text = run(report_main, "savings", "--database-url", database_url, "--format", "json", *case)
        assert status == 0, text
        options = dict(zip(case[::2], case[1::2], strict=True))
        tz = ZoneInfo(options.get("--tz", "UTC"))
        since = date.fromisoformat(options["--since"]) if "--since" in options else None
        tier = options.get("--tier-model", "=").split("=")
        expected = analyze_savings(
            [e for e in entries if since is None or parse_time(e.time).astimezone(tz).date() >= since],
            by=options["--by"],
            window=options.get("--window", "day"),
            tz=tz,
            baseline=ModelRef("openai", "gpt-4o-mini") if "--baseline" in options else None,
            tier_models={tier[0]: ModelRef("openai", "gpt-4o-mini")} if tier[0] else {},
            pricer=book_pricer({ref: [(NOW, price)] for ref, price in book.items()}),
        )
        assert json.loads(text) == json.loads(render_json(savings_json(expected))), case
    _, text = run(report_main, "savings", "--database-url", database_url, "--format", "json")
    total = json.loads(text)["total"]
    assert (total["actualMicroUSD"], total["askedForMicroUSD"]) == (1_315_000, 3_900_000)  # by hand


def test_savings_on_the_database_price_each_row_with_the_price_in_force_at_its_time(
    database_url: str,
) -> None:
    load_ledgers(database_url, {"sidecar-a": DATA / "savings-ledger"})
    entries = list(read_entries([DATA / "savings-ledger"]))
    first = datetime(2026, 3, 1, tzinfo=UTC)
    book = record_book(database_url, recorded_at=first)
    # Serial 8 (in force from March 2nd) prices gpt-4o higher above 150k prompt tokens: the rows of
    # 200k take that tier; serial 9 (from March 3rd) raises gpt-4o's base price: only March 3rd's row
    # (its premium comparison is gpt-4o at 100k tokens) takes it, the rows before keep serial 8's.
    base = BOOK[("oai", "openai", "gpt-4o")]
    higher = Rates(input_per_mtok=5_000_000, output_per_mtok=15_000_000)
    tiered = ModelPrice(
        source="override", base=base, tiers=(PriceTier(above_input_tokens=150_000, rates=higher),)
    )
    raised = ModelPrice(source="override", base=higher)
    second, third = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
    record_book(database_url, {("oai", "openai", "gpt-4o"): tiered}, serial=8, recorded_at=second)
    record_book(database_url, {("oai", "openai", "gpt-4o"): raised}, serial=9, recorded_at=third)
    gpt_4o = ModelRef("openai", "gpt-4o")
    timeline = history((first, book), (second, {gpt_4o: tiered}), (third, {gpt_4o: raised}))
    for case in [("--by", "team", "--window", "day"), ("--by", "model", "--window", "month")]:
        status, text = run(report_main, "savings", "--database-url", database_url, "--format", "json", *case)
        assert status == 0, text
        expected = analyze_savings(
            entries, by=case[1], window=case[3], tz=ZoneInfo("UTC"), pricer=book_pricer(timeline)
        )
        assert json.loads(text) == json.loads(render_json(savings_json(expected))), case
    total = json.loads(text)["total"]
    # By hand, against serial 8's prices for every row: March 3rd's premium is gpt-4o at 100k in and
    # 10k out, $0.35 on serial 8, $0.65 on serial 9; the asked-for costs do not change.
    on_serial_8 = analyze_savings(
        entries,
        by="team",
        window="day",
        tz=ZoneInfo("UTC"),
        pricer=book_pricer(history((first, {**book, gpt_4o: tiered}))),
    ).total
    assert total["askedForMicroUSD"] == on_serial_8.asked_micro_usd > 3_900_000
    assert total["premiumMicroUSD"] == on_serial_8.premium_micro_usd + 300_000


def as_version_2(entry: Entry) -> Entry:
    """The request written as version 2: how the model resolved and the verdict recorded structured,
    with nothing left to parse (the requested model names only the model that served, no verdict text)."""
    requested = entry.requested_model
    if requested == "auto":
        resolution = EntryResolution(kind="auto", tier=entry.tier)
    elif requested.startswith("tier:"):
        resolution = EntryResolution(kind="tier", tier=requested.removeprefix("tier:"))
    else:
        return msgspec.structs.replace(entry, v=2, decision=EntryDecision(action="allow"))
    return msgspec.structs.replace(
        entry, v=2, resolution=resolution, decision=EntryDecision(action=entry.verdict.split(";")[0]),
        requested_model=f"{entry.connection}/{entry.model}", verdict="",
    )  # fmt: skip


def test_savings_on_the_database_read_version_2_entries_by_their_resolution_and_decision(
    database_url: str, tmp_path: Path
) -> None:
    entries, prev = [], GENESIS
    for seq, entry in enumerate(read_entries([DATA / "savings-ledger"]), start=1):
        digest, line = chain_entry(as_version_2(entry), seq, prev)
        entries.append(decode_entry(line))
        prev = digest
    (tmp_path / file_name(1)).write_bytes(b"".join(entry_line(e) for e in entries))
    load_ledgers(database_url, {"sidecar-v2": tmp_path})
    book = record_book(database_url)
    status, text = run(report_main, "savings", "--database-url", database_url, "--format", "json")
    assert status == 0, text
    pricer = book_pricer({ref: [(NOW, price)] for ref, price in book.items()})
    expected = analyze_savings(entries, by="team", window="day", tz=ZoneInfo("UTC"), pricer=pricer)
    assert json.loads(text) == json.loads(render_json(savings_json(expected)))
    total = json.loads(text)["total"]
    assert (total["requests"], total["downgraded"], total["lightOnly"], total["auto"]) == (7, 1, 1, 2)
    assert (total["actualMicroUSD"], total["askedForMicroUSD"]) == (1_315_000, 3_900_000)  # as version 1
