"""A sidecar ``kill -9``ed with requests in flight and restarted on its volume corrects its old leases:
the authority charges them what the ledger shows plus what was in flight at its worst case, not their
whole amount (real PostgreSQL, authority and sidecar processes)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

from sluicegate_contract.ledgerfiles import read_entries
from sluicegate_sidecar.journalfile import JOURNAL_FILE, boot_id
from sluicegate_sidecar.leasejournal import read
from tests.support.fleet import authority, sidecar, start_all, stop_all
from tests.support.sidecar_harness import budget, connection, priced, render_dir

FLAGS = ("--lease-refresh-seconds", "0.25", "--budget-wait-seconds", "2")
MAX_TOKENS = 16
OUTPUT_PER_MTOK = 100.0
IN_FLIGHT = 6
# One request's worst case: its whole output cap, plus its (short) prompt at 2 USD per Mtok.
OUTPUT_WORST = int(MAX_TOKENS * OUTPUT_PER_MTOK)
PROMPT_SLACK = 400
MIN_RESERVATION = int(OUTPUT_PER_MTOK)  # at least one output token (the cap clamped to the lease's room)


def chat(url: str, index: int) -> int:
    body = {
        "model": "mock-small",
        "messages": [{"role": "user", "content": f"hello {index}"}],
        "max_tokens": MAX_TOKENS,
    }
    try:
        return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code
    except httpx.TransportError:
        return 0  # cut by the kill


def leases(database_url: str) -> list[tuple[str, int, int]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT state, amount, reported FROM budget_leases").fetchall()


def settled(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT settled, leased FROM budget_accounts").fetchone()
    assert row is not None
    return row


def test_a_sidecar_killed_mid_burst_and_restarted_on_its_volume_is_charged_its_ledger_plus_what_was_in_flight(
    tmp_path: Path, database_url: str
) -> None:
    resources = [
        connection(
            "mock", "mock",
            [priced("mock-small", input_per_mtok=2.0, output_per_mtok=OUTPUT_PER_MTOK)],
            mock={"latencyMs": 2500},
        ),
        budget("team-cap", 0.3),
    ]  # fmt: skip
    config = render_dir(tmp_path / "config", resources)
    ledger = tmp_path / "ledger"
    auth = authority([config], database_url, tmp_path / "authority.log", ttl=2.0)
    car = sidecar(config, ledger, tmp_path / "sidecar.log", [auth.url], *FLAGS)
    start_all([auth, car])
    try:
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            assert list(pool.map(lambda i: chat(car.url, i), range(4))) == [200] * 4
            cut = [pool.submit(chat, car.url, 100 + i) for i in range(IN_FLIGHT)]
            time.sleep(1.2)  # reserved and upstream, none answered yet
            car.kill()
            assert [future.result() for future in cut] == [0] * IN_FLIGHT
        ledgered = sum(entry.cost_micro_usd for entry in read_entries([ledger]))
        old = leases(database_url)
        assert old and all(state in ("open", "expired") for state, _, _ in old)  # nothing reported them
        journal = (ledger / JOURNAL_FILE).read_bytes()  # what the killed process left
        car.start()  # restarted on the same volume: the same sidecar id, its old process's journal
        deadline = time.monotonic() + 15
        while any(state in ("open", "expired") for state, _, _ in leases(database_url)):
            assert time.monotonic() < deadline, leases(database_url)
            time.sleep(0.2)
        charged, leased = settled(database_url)
    finally:
        stop_all([car])
        stop_all([auth])
    assert leased == 0
    assert {state for state, _, _ in leases(database_url)} <= {"closed", "reconciled"}
    # Never less than the ledger shows; what was in flight counts at its reservation (its output cap,
    # or less when the lease's room clamped it), since the provider may have served it; nothing more:
    # the leases' idle room is given back to the fleet, not charged.
    assert charged >= ledgered + IN_FLIGHT * MIN_RESERVATION
    assert charged <= ledgered + IN_FLIGHT * (OUTPUT_WORST + PROMPT_SLACK)
    # Exactly what the killed process's journal shows: settled (once in the ledger) plus its open
    # reservations at their amount.
    assert charged == sum(owed for _, owed in read(journal, boot_id()).owed().values())
