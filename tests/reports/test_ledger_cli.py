"""`sluicegate ledger export` and `summary`: what a finance team reads."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest

from sluicegate_reports.ledger_cli import CSV_COLUMNS, main
from tests.support.budget_samples import NOON, entry, write_ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    write_ledger(
        tmp_path,
        [
            entry(1, cost=1_500_000, team="search"),
            entry(2, cost=250, team="ads", model="claude-haiku"),
            entry(3, cost=2, team=None, time=NOON + timedelta(hours=11, minutes=30)),  # 23:30 UTC
            entry(4, cost=10, team='=HYPERLINK("http://evil")', tags={"ticket": "@SUM(A1)"}),
        ],
    )
    return tmp_path


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_export_writes_one_csv_row_per_entry_with_stable_columns(ledger: Path) -> None:
    code, text = run("export", str(ledger), "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["seq"] for r in rows] == ["1", "2", "3", "4"]
    first = rows[0]
    assert (first["costMicroUSD"], first["costUSD"], first["team"], first["inputTokens"]) == (
        "1500000",
        "1.500000",
        "search",
        "101",
    )
    assert rows[2]["team"] == ""


def test_export_defuses_spreadsheet_formulas_from_request_headers(ledger: Path) -> None:
    _, text = run("export", str(ledger))
    last = list(csv.DictReader(io.StringIO(text)))[-1]
    assert last["team"].startswith("'=")
    assert last["tags"] == '{"ticket": "@SUM(A1)"}'


def test_export_to_a_file(ledger: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    assert run("export", str(ledger), "-o", str(target))[0] == 0
    assert len(target.read_text().splitlines()) == 5


def test_summary_totals_spend_per_day_and_team(ledger: Path) -> None:
    code, text = run("summary", str(ledger), "--by", "team")
    assert code == 0
    table = [line.split() for line in text.splitlines()]
    assert table[0] == ["DAY", "TEAM", "REQUESTS", "INPUT_TOKENS", "OUTPUT_TOKENS", "SPEND_USD"]
    assert table[1][:2] == ["2026-11-23", "search"] and table[1][-1] == "1.500000"
    assert table[-1] == ["2026-11-23", "TOTAL", "4", str(101 + 102 + 103 + 104), "80", "1.500262"]
    assert ["2026-11-23", "(none)", "1", "103", "20", "0.000002"] in table


def test_summary_windows_follow_the_timezone_asked_for(ledger: Path) -> None:
    _, text = run("summary", str(ledger), "--by", "model", "--tz", "Asia/Tokyo")
    days = {line.split()[0] for line in text.splitlines()[1:]}
    assert days == {"2026-11-23", "2026-11-24"}  # 23:30 UTC is the next morning in Tokyo


def test_summary_by_month(ledger: Path) -> None:
    _, text = run("summary", str(ledger), "--window", "month", "--by", "model")
    assert text.splitlines()[1].split()[:2] == ["2026-11", "gpt-4o-mini"]


def test_a_missing_path_is_one_clear_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err.strip().endswith("nope: no such file or directory")
    assert main(["summary", str(tmp_path)]) == 1
    assert "no ledger files" in capsys.readouterr().err


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--format", "xml"]) == 2
    assert main([]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_an_unknown_timezone_is_reported(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(ledger), "--tz", "Mars/Base"]) == 1
    assert "unknown timezone 'Mars/Base'" in capsys.readouterr().err
