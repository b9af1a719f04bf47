"""Reports on the fleet ledger in PostgreSQL say what they say on the same entries in files: the
reconciliation finds the injected gap, the summary and the export match."""

from __future__ import annotations

import io
from pathlib import Path

from sluicegate_sidecar.ledger_cli import main as ledger_main
from sluicegate_sidecar.report_cli import main as report_main
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
