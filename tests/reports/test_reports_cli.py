"""``sluicegate report savings|reconcile``: outputs, exit statuses, and the metric it can publish."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sluicegate_reports.report_cli import main

DATA = Path(__file__).parent / "data"
LEDGER = str(DATA / "recon-ledger")
NOW = datetime(2026, 3, 4, tzinfo=UTC)


def report(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(argv), out, NOW)
    return status, out.getvalue()


def test_reconcile_exits_1_when_a_gap_exceeds_the_threshold_and_says_why(capsys) -> None:
    status, text = report(
        "reconcile", LEDGER, "--export", str(DATA / "openai-costs.json"), "--threshold-usd", "0.10"
    )
    assert status == 1
    assert "! 2026-03-03  gpt-4o" in text
    assert "worth $0.37 at catalog prices" in capsys.readouterr().err


def test_reconcile_exits_0_when_every_gap_is_within_the_threshold() -> None:
    status, text = report(
        "reconcile", LEDGER, "--export", str(DATA / "openai-costs.json"), "--threshold-usd", "0.50"
    )
    assert status == 0
    assert "No day-model gap over $0.5000" in text


def test_reconcile_exits_2_on_an_export_it_cannot_read(tmp_path, capsys) -> None:
    bad = tmp_path / "export.csv"
    bad.write_text("day,model,dollars\n")
    assert report("reconcile", LEDGER, "--export", str(bad))[0] == 2
    assert "unrecognised CSV columns" in capsys.readouterr().err
    assert report("reconcile", LEDGER, "--export", str(tmp_path / "missing.json"))[0] == 2
    assert report("reconcile", str(tmp_path / "nothing"), "--export", str(DATA / "openai-costs.json"))[0] == 2
    assert (
        report("reconcile", LEDGER, "--export", str(DATA / "openai-costs.json"), "--threshold-usd", "lots")[0]
        == 2
    )


def test_reconcile_json_carries_each_day_model_with_its_causes() -> None:
    status, text = report("reconcile", LEDGER, "--export", str(DATA / "openai-costs.json"), "--format", "json",
                          "--threshold-usd", "0.10")  # fmt: skip
    doc = json.loads(text)
    assert status == 1 and doc["failed"] is True
    gap = next(r for r in doc["rows"] if r["over"])
    assert (gap["day"], gap["model"], gap["gapMicroUSD"]) == ("2026-03-03", "gpt-4o", 370_000)
    assert [r["requestId"] for r in gap["requests"]] == ["r5"]
    assert [f["costBasis"] for f in doc["flagged"]] == ["estimated", "unpriced"]


def test_reconcile_csv_has_exact_amounts() -> None:
    _, text = report("reconcile", LEDGER, "--export", str(DATA / "openai-costs.csv"), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    gap = next(r for r in rows if r["STATUS"] == "OVER")
    assert (gap["DAY"], gap["MODEL"], gap["GAP_USD"], gap["INVOICED_USD"]) == (
        "2026-03-03", "gpt-4o", "0.370000", "0.720000"
    )  # fmt: skip


def test_savings_table_json_and_csv_agree_on_the_total(tmp_path) -> None:
    ledger = str(DATA / "savings-ledger")
    status, text = report("savings", ledger, "--by", "team")
    assert status == 0
    assert "Saved against what apps asked for: $2.5850 of $3.9000 (66.3%)" in text
    doc = json.loads(report("savings", ledger, "--format", "json")[1])
    assert doc["total"]["savedMicroUSD"] == 2_585_000 and doc["baseline"] == "openai/gpt-4o"
    out = tmp_path / "savings.csv"
    assert report("savings", ledger, "--format", "csv", "-o", str(out))[0] == 0
    total = list(csv.DictReader(io.StringIO(out.read_text())))[-1]
    assert (total["TEAM"], total["SAVED_USD"], total["DOWNGRADE"]) == ("TOTAL", "2.585000", "1")


def test_savings_options_name_models_and_tiers() -> None:
    ledger = str(DATA / "savings-ledger")
    doc = json.loads(report("savings", ledger, "--format", "json", "--baseline", "claude/claude-haiku-4-5",
                            "--tier-model", "standard=openai/gpt-4o-mini", "--until", "2026-03-02")[1])  # fmt: skip
    assert doc["baseline"] == "anthropic/claude-haiku-4-5"
    assert doc["total"]["requests"] == 6  # --until drops s7


def test_savings_refuses_a_baseline_it_cannot_place(capsys) -> None:
    assert report("savings", str(DATA / "savings-ledger"), "--baseline", "gpt-9")[0] == 2
    assert "name the provider or connection" in capsys.readouterr().err
    assert report("savings", str(DATA / "savings-ledger"), "--tier-model", "standard")[0] == 2


def test_html_reports_are_written_with_their_charts(tmp_path) -> None:
    page = tmp_path / "savings.html"
    report("savings", str(DATA / "savings-ledger"), "--html", str(page))
    assert page.read_text().count("<svg") == 3
    page = tmp_path / "reconcile.html"
    report("reconcile", LEDGER, "--export", str(DATA / "openai-costs.json"), "--html", str(page))
    html = page.read_text()
    assert html.count("<svg") == 3 and "#d62728" in html  # the gap over the threshold is drawn red


def test_reconcile_writes_its_result_as_prometheus_metrics(tmp_path) -> None:
    target = tmp_path / "reconcile.prom"
    report("reconcile", LEDGER, "--export", str(DATA / "openai-costs.json"), "--threshold-usd", "0.10",
           "--metrics-file", str(target))  # fmt: skip
    text = target.read_text()
    assert "sluicegate_reconcile_failed 1\n" in text
    assert 'sluicegate_reconcile_gap_usd{day="2026-03-03",model="gpt-4o",provider="openai"} 0.370000' in text


def test_reconcile_pushes_its_result_to_a_pushgateway() -> None:
    received: list[tuple[str, str, bytes]] = []

    class Gateway(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.command, self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        status, _ = report(
            "reconcile", LEDGER, "--export", str(DATA / "openai-costs.json"), "--pushgateway", url
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert status == 1
    ((method, path, body),) = received
    assert (method, path) == ("PUT", "/metrics/job/sluicegate_reconcile")
    assert b"sluicegate_reconcile_failed 1" in body


def test_reports_read_every_sidecars_ledger_collected_below_one_directory(tmp_path) -> None:
    import shutil
    from pathlib import Path

    from sluicegate_contract.ledgerfiles import read_entries
    from sluicegate_reports.report_cli import ledger_dirs

    source = Path(__file__).parent / "data" / "savings-ledger"
    one_pod = list(read_entries([source]))
    for pod in ("pod-a", "pod-b"):
        shutil.copytree(source, tmp_path / "ledgers" / pod)
    dirs = ledger_dirs([str(tmp_path / "ledgers")])
    assert dirs[1:] == [str(tmp_path / "ledgers" / "pod-a"), str(tmp_path / "ledgers" / "pod-b")]
    assert len(list(read_entries(dirs))) == 2 * len(one_pod) > 0
