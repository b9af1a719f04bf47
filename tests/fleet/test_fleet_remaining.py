"""The remaining-budget header in fleet mode: what the fleet has left, as this sidecar's last sync saw
it, not the slice of it this sidecar holds on lease (at most a quarter of the rest over its holders)."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import httpx

from sluicegate_contract.ledgerfiles import read_entries
from tests.support.fleet import authority, sidecar, start_all, stop_all
from tests.support.sidecar_harness import budget, connection, priced, render_dir

CAP_USD = Decimal("0.3")
FLAGS = ("--lease-refresh-seconds", "0.25")


def remaining_after_chat(url: str) -> Decimal:
    body = {"model": "mock-small", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return Decimal(response.headers["x-sluicegate-budget-remaining-usd"])


def spent_usd(*ledger_dirs: Path) -> Decimal:
    micro = sum(entry.cost_micro_usd for d in ledger_dirs for entry in read_entries([d]))
    return Decimal(micro) / 1_000_000


def test_each_sidecar_reports_what_the_fleet_has_left_never_more_than_the_cap_less_every_ledger(
    tmp_path: Path, database_url: str
) -> None:
    config = render_dir(
        tmp_path / "config",
        [
            connection("mock", "mock", [priced("mock-small", input_per_mtok=2.0, output_per_mtok=100.0)]),
            budget("team-cap", float(CAP_USD)),
        ],
    )
    auth = authority([config], database_url, tmp_path / "authority.log")
    first = sidecar(config, tmp_path / "ledger-1", tmp_path / "sidecar-1.log", [auth.url], *FLAGS)
    second = sidecar(config, tmp_path / "ledger-2", tmp_path / "sidecar-2.log", [auth.url], *FLAGS)
    start_all([auth, first, second])
    ledgers = (tmp_path / "ledger-1", tmp_path / "ledger-2")
    seen: list[tuple[Decimal, Decimal]] = []
    try:
        for _ in range(5):
            remaining_after_chat(first.url)
        time.sleep(1.0)  # a few syncs: the spend reported, each sidecar's view of the account renewed
        for car in (second, first):  # the second opens its lease with this request
            remaining = remaining_after_chat(car.url)
            seen.append((remaining, CAP_USD - spent_usd(*ledgers)))  # its line is written before its reply
            time.sleep(0.6)  # the other sidecar's view catches up (it is as old as its last sync)
    finally:
        stop_all([first, second])
        stop_all([auth])
    for remaining, left in seen:
        assert left < CAP_USD
        # never more than the cap less what every ledger holds, once the views are a sync old (the
        # other sidecar's unused lease is not this one's to spend) ...
        assert remaining <= left
        # ... and the fleet's, not this sidecar's slice: a lease holds at most a quarter of the rest
        assert remaining > left * Decimal("0.75")
