#!/usr/bin/env python3
"""Render sample savings and reconciliation reports as HTML and screenshot them with headless Chromium.

Usage: .venv/bin/python scripts/screenshot-report.py [OUT_DIR]   (default: ./report-screenshots)
Writes OUT_DIR/{savings,reconcile}.html and, when /usr/bin/chromium exists, OUT_DIR/{savings,reconcile}.png.
The sample ledger (four weeks, five teams, four models) and the OpenAI costs export are synthetic
and deterministic; the export carries one injected $0.37 gap (an unpriced gpt-4o request).
"""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for source in ("contract", "sidecar", "reports"):
    sys.path.insert(0, str(ROOT / source))

import msgspec  # noqa: E402

from sluicegate_contract.ledger import (  # noqa: E402
    GENESIS,
    Entry,
    EntryAttribution,
    EntryUsage,
    entry_hash,
    entry_line,
    format_time,
)
from sluicegate_reports import report_cli  # noqa: E402
from sluicegate_reports.savings import ModelRef, catalog_cost  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
START = datetime(2026, 2, 2, tzinfo=UTC)
DAYS = 28
TEAMS = {"search": 18, "chat": 14, "support": 9, "billing": 4, "recsys": 6}  # requests per day
LIGHT = ("oai", "openai", "gpt-4o-mini")
PREMIUM = ("oai", "openai", "gpt-4o")
CLAUDE = ("claude", "anthropic", "claude-haiku-4-5")
SONNET = ("claude", "anthropic", "claude-sonnet-4-5")


def _entry(when: datetime, rid: str, team: str, requested: str, target: tuple[str, str, str],
           usage: EntryUsage, verdict: str, tier: str | None, basis: str = "exact") -> Entry:  # fmt: skip
    conn, provider, model = target
    cost = 0 if basis == "unpriced" else catalog_cost(ModelRef(provider, model), usage, when) or 0
    return Entry(
        time=format_time(when), request_id=rid,
        attribution=EntryAttribution(namespace="shop", workload=team, team=team, service=f"{team}-api"),
        connection=conn, provider=provider, model=model, requested_model=requested, tier=tier,
        verdict=verdict,
        usage=usage, cost_micro_usd=cost, cost_basis=basis, status=200,  # type: ignore[arg-type]
    )  # fmt: skip


def sample_entries() -> list[Entry]:
    rng = random.Random(7)
    entries: list[Entry] = []
    for day in range(DAYS):
        for team, per_day in TEAMS.items():
            for n in range(per_day + rng.randint(-2, 3)):
                when = START + timedelta(days=day, seconds=rng.randint(0, 86_399))
                usage = EntryUsage(input=rng.randint(2_000, 60_000), output=rng.randint(200, 6_000))
                pick = rng.random()
                squeeze = day >= 16 and team in ("search", "chat")  # a budget tightens in week 3
                if pick < 0.35:
                    requested, target, tier = "auto", LIGHT if rng.random() < 0.7 else PREMIUM, "auto"
                    verdict = "allow"
                elif pick < 0.55:
                    requested, target, tier, verdict = "openai/gpt-4o", PREMIUM, None, "allow"
                elif pick < 0.7:
                    requested, target, tier, verdict = "claude/claude-sonnet-4-5", SONNET, None, "allow"
                elif pick < 0.8:
                    requested, target, tier, verdict = "tier:light", CLAUDE, "light", "allow"
                else:
                    requested, target, tier, verdict = "tier:premium", PREMIUM, "premium", "allow"
                if squeeze and requested.startswith(("tier:", "auto")) and rng.random() < 0.6:
                    target, tier = LIGHT, "light"
                    verdict = "DOWNGRADE" if rng.random() < 0.7 else "LIGHT_ONLY"
                tier = tier if tier != "auto" else ("light" if target == LIGHT else "premium")
                entries.append(
                    _entry(when, f"{team}-{day}-{n}", team, requested, target, usage, verdict, tier)
                )
    gap_day = START + timedelta(days=20, hours=12)
    big = EntryUsage(input=100_000, output=12_000)  # $0.37 on gpt-4o, recorded at $0
    entries.append(
        _entry(gap_day, "unpriced-1", "chat", "openai/gpt-4o", PREMIUM, big, "allow", None, "unpriced")
    )
    entries.sort(key=lambda e: e.time)
    return entries


def write_ledger(entries: list[Entry], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    prev, lines = GENESIS, []
    for seq, item in enumerate(entries, 1):
        linked = msgspec.structs.replace(item, seq=seq, prev_hash=prev, hash="")
        prev = entry_hash(linked)
        lines.append(entry_line(msgspec.structs.replace(linked, hash=prev)))
    (folder / "ledger-000001.jsonl").write_bytes(b"".join(lines))


def openai_costs(entries: list[Entry]) -> dict[str, object]:
    """What OpenAI would invoice for the ledger's OpenAI requests, unpriced ones at catalog price."""
    totals: dict[tuple[int, str], int] = {}
    for e in entries:
        if e.provider != "openai" or e.usage is None or e.model is None:
            continue
        when = datetime.fromisoformat(e.time)
        day = int(datetime(when.year, when.month, when.day, tzinfo=UTC).timestamp())
        cost = catalog_cost(ModelRef("openai", e.model), e.usage, when) or 0
        totals[(day, e.model)] = totals.get((day, e.model), 0) + cost
    snapshot = {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18"}
    buckets = []
    for day in sorted({d for d, _ in totals}):
        results = [
            {"object": "organization.costs.result", "amount": {"value": micro / 1e6, "currency": "usd"},
             "line_item": f"{snapshot.get(model, model)}, input+output", "project_id": "proj_shop"}
            for (d, model), micro in sorted(totals.items()) if d == day
        ]  # fmt: skip
        buckets.append({"object": "bucket", "start_time": day, "end_time": day + 86_400, "results": results})
    return {"object": "page", "data": buckets, "has_more": False, "next_page": None}


def screenshot(page: Path, png: Path) -> bool:
    if not CHROMIUM.exists():
        return False
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1280,1600", page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    return png.exists()


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "report-screenshots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    entries = sample_entries()
    ledger = out / "sample-ledger"
    shutil.rmtree(ledger, ignore_errors=True)
    write_ledger(entries, ledger)
    export = out / "sample-openai-costs.json"
    export.write_text(json.dumps(openai_costs(entries), indent=1), encoding="utf-8")
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    quiet = io.StringIO()
    report_cli.main(["savings", str(ledger), "--by", "team", "--html", str(out / "savings.html")], quiet, now)
    status = report_cli.main(
        ["reconcile", str(ledger), "--export", str(export), "--threshold-usd", "0.10",
         "--html", str(out / "reconcile.html")],
        quiet, now,
    )  # fmt: skip
    if status not in (0, 1):
        print(f"reconcile failed with status {status}", file=sys.stderr)
        return 1
    shots = [screenshot(out / f"{name}.html", out / f"{name}.png") for name in ("savings", "reconcile")]
    if not all(shots):
        print(f"HTML written to {out}; no screenshot ({CHROMIUM} is not installed)")
        return 0
    print(f"wrote {out}/savings.png and {out}/reconcile.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
