"""Benchmark: reports on a fleet ledger of N entries in PostgreSQL (default one million).

Starts a throwaway PostgreSQL (the Debian server binaries, as tests/support/postgres.py does), loads N
synthetic entries with COPY (not timed), records a price book, then times `sluicegate report savings`,
`report reconcile` and `ledger summary` with --database-url, each in a fresh process.

    .venv/bin/python scripts/bench-ledger-db.py [--entries 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sluicegate_contract.ledger import Entry, EntryAttribution, EntryUsage, format_time  # noqa: E402
from sluicegate_contract.ledgerrow import COLUMNS, decode_shipped, row_values  # noqa: E402
from sluicegate_contract.schema import ModelPrice, Rates  # noqa: E402
from sluicegate_operator.authority.store import Store  # noqa: E402
from tests.support.postgres import start_server, stop_server  # noqa: E402

MODELS = [("gpt-4o", 2_500_000, 10_000_000), ("gpt-4o-mini", 150_000, 600_000), ("o3", 2_000_000, 8_000_000)]
ASKED = ["auto", "tier:premium", "tier:standard", "oai/gpt-4o", "oai/gpt-4o-mini"]


def _entries(count: int, start: datetime) -> list[bytes]:
    rng = random.Random(7)
    lines = []
    for seq in range(1, count + 1):
        model, rate_in, rate_out = rng.choice(MODELS)
        tokens_in, tokens_out = rng.randint(50, 5000), rng.randint(10, 2000)
        entry = Entry(
            time=format_time(start + timedelta(seconds=seq * 2.5)),
            request_id=f"r{seq}",
            attribution=EntryAttribution(
                namespace="shop", workload="chat", team=rng.choice(["search", "chat", "ads"]),
                end_customer=f"customer-{rng.randint(1, 500)}",
            ),
            connection="oai", provider="openai", model=model, requested_model=rng.choice(ASKED),
            tier=rng.choice(["light", "standard", "premium"]),
            verdict=rng.choice(["allow", "allow", "allow", "DOWNGRADE", "LIGHT_ONLY"]),
            usage=EntryUsage(input=tokens_in, output=tokens_out, cached=rng.choice([0, 0, tokens_in // 2])),
            cost_micro_usd=-(-(tokens_in * rate_in + tokens_out * rate_out) // 1_000_000),
            cost_basis=rng.choice(["exact"] * 50 + ["estimated"]),
            status=200, budget_scopes=("team-cap",), seq=seq, prev_hash="0" * 64, hash="1" * 64,
        )  # fmt: skip
        lines.append(msgspec.json.encode(entry, order="sorted"))
    return lines


def _load(url: str, lines: list[bytes]) -> None:
    async def migrate_and_price() -> None:
        store = await Store.connect(url)
        rows = [
            ("oai", "openai", name, None, msgspec.json.encode(
                ModelPrice(source="catalog", base=Rates(input_per_mtok=i, output_per_mtok=o))).decode())
            for name, i, o in MODELS
        ]  # fmt: skip
        await store.record_prices("shop", 1, rows)
        await store.close()

    asyncio.run(migrate_and_price())
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY ledger_entries ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for line in lines:
                copy.write_row(row_values("bench", decode_shipped(line), line.decode()))
        cur.execute("ANALYZE ledger_entries")


def _time(argv: list[str]) -> float:
    began = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - began
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv[:4])} failed: {done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    server = start_server()
    try:
        url = server.create_database()
        start = datetime(2026, 3, 1, tzinfo=UTC)
        began = time.monotonic()
        lines = _entries(args.entries, start)
        _load(url, lines)
        print(f"loaded {args.entries} entries in {time.monotonic() - began:.1f} s (not part of the figures)")
        days = (args.entries * 2.5) / 86400
        export = REPO / "tests" / "reports" / "data" / "openai-costs.json"
        cli = [sys.executable, "-m", "sluicegate_cli"]
        for name, argv in [
            ("report savings --by team --window day", [*cli, "report", "savings", "--by", "team"]),
            ("report savings --by model --window month", [*cli, "report", "savings", "--by", "model",
                                                          "--window", "month"]),
            ("report reconcile (openai export)", [*cli, "report", "reconcile", "--export", str(export)]),
            ("ledger summary --by endCustomer", [*cli, "ledger", "summary", "--by", "endCustomer"]),
        ]:  # fmt: skip
            seconds = _time([*argv, "--database-url", url])
            print(f"{name}: {seconds:.1f} s ({args.entries} entries over {days:.0f} days)")
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
