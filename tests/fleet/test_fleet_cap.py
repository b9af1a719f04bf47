"""One cap across a fleet: a real PostgreSQL, budget authority processes and three sidecar processes.

A burst of concurrent requests (streaming and not, varied sizes) spread over the sidecars against a
small cap: what every sidecar's ledger settled stays within the cap, most of the cap is used, and the
rest are refused with 402 — also while a sidecar is ``kill -9``ed and restarted on its volume and an
authority process is killed mid-burst.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg
from httpx_aiohttp import AiohttpTransport

from sluicegate_contract.ledgerfiles import read_entries
from sluicegate_sidecar import leasejournal
from sluicegate_sidecar.authorityclient import SIDECAR_ID_FILE
from sluicegate_sidecar.journalfile import JOURNAL_FILE, boot_id
from tests.support.fleet import Proc, authority, sidecar, start_all, stop_all, thread_heaps
from tests.support.sidecar_harness import budget, connection, priced, render_dir

CAP_USD = 0.3
CAP = int(CAP_USD * 1_000_000)
REQUESTS = 1_000
SIDECARS = 3
# Leases synced every 0.25 s; a request refused for budget waits at most 2 s for room to free up.
FLAGS = ("--lease-refresh-seconds", "0.25", "--budget-wait-seconds", "2")


def fleet_config(directory: Path) -> Path:
    return render_dir(
        directory,
        [
            connection(
                "mock",
                "mock",
                [priced("mock-small", input_per_mtok=2.0, output_per_mtok=100.0)],
                mock={"latencyMs": 30, "streamChunkDelayMs": 1},
            ),
            budget("team-cap", CAP_USD),
        ],
    )


def ledger_total(ledger_dirs: list[Path]) -> tuple[int, int]:
    entries = [entry for directory in ledger_dirs for entry in read_entries([directory])]
    return sum(entry.cost_micro_usd for entry in entries), len(entries)


def open_at_kill(journal: bytes) -> int:
    """The reservations a killed sidecar's journal shows open (sent upstream, no ledger line yet), at
    their worst case: what its restart reports as spent for them, so the authority charges them."""
    return leasejournal.read(journal, boot_id()).open()  # one lease a reservation: one policy, one window


def never_heard_of(database_url: str, ledger_dir: Path, journal: bytes, killed_at: float) -> int:
    """What the authority granted the killed process in a sync the kill cut short: leases of that
    sidecar opened before the kill that its journal never recorded. The process never reserved on
    them (a lease is journaled before any reservation on it), and its restart, another process, does
    not know them: they stay charged in full (README "Budgets across replicas", Crashes)."""
    sidecar = (ledger_dir / SIDECAR_ID_FILE).read_text().strip()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT lease_id::text, amount - reported FROM budget_leases WHERE state = 'expired'"
            " AND sidecar_id = %s AND created_at <= to_timestamp(%s)",
            (sidecar, killed_at),
        ).fetchall()
    return sum(int(left) for lease_id, left in rows if lease_id.encode() not in journal)


def stranded_and_charged(database_url: str) -> tuple[int, int]:
    """What the killed sidecar's expired leases hold beyond what they reported, and all the authority
    charged to the account (settled spend and expired leases in full)."""
    with psycopg.connect(database_url) as conn:
        stranded = conn.execute(
            "SELECT coalesce(sum(amount - reported), 0) FROM budget_leases WHERE state = 'expired'"
        ).fetchone()
        charged = conn.execute("SELECT coalesce(sum(settled), 0) FROM budget_accounts").fetchone()
    assert stranded is not None and charged is not None
    return int(stranded[0]), int(charged[0])


async def one_request(client: httpx.AsyncClient, url: str, rng: random.Random) -> int:
    stream = rng.random() < 0.5
    body = {
        "model": "mock-small",
        "messages": [{"role": "user", "content": "budget " * rng.randint(1, 200)}],
        "max_tokens": rng.choice([8, 16, 24, 32]),
        "stream": stream,
    }
    for _attempt in range(20):
        try:
            if not stream:
                response = await client.post(f"{url}/v1/chat/completions", json=body)
                if response.status_code != 503:
                    return response.status_code
            else:
                async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                    text = b"".join([chunk async for chunk in response.aiter_bytes()])
                    if response.status_code == 200:
                        assert text.rstrip().endswith(b"data: [DONE]"), text[-200:]
                    if response.status_code != 503:
                        return response.status_code
        except httpx.TransportError:
            pass  # a sidecar killed mid-request: the client tries again elsewhere
        await asyncio.sleep(0.2)
        url = rng.choice(client.urls)  # type: ignore[attr-defined]
    return 503


async def burst(sidecars: list[Proc], chaos=None) -> Counter[int]:
    # httpx over aiohttp (as the sidecar's own upstream client): the load generator shares 2 cores
    async with httpx.AsyncClient(timeout=60, transport=AiohttpTransport()) as client:
        client.urls = [s.url for s in sidecars]  # type: ignore[attr-defined]
        tasks = [
            asyncio.create_task(one_request(client, sidecars[i % len(sidecars)].url, random.Random(i)))
            for i in range(REQUESTS)
        ]
        if chaos is not None:
            await chaos(client.urls)  # type: ignore[attr-defined]
        codes = await asyncio.gather(*tasks)
    return Counter(codes)


def start_fleet(tmp_path: Path, database_url: str, authorities: int, ttl: float = 2.0):
    config = fleet_config(tmp_path / "config")
    auths = [
        authority([config], database_url, tmp_path / f"authority-{i}.log", ttl=ttl)
        for i in range(authorities)
    ]
    urls = [a.url for a in auths]
    ledgers = [tmp_path / f"ledger-{i}" for i in range(SIDECARS)]
    cars = [sidecar(config, ledgers[i], tmp_path / f"sidecar-{i}.log", urls, *FLAGS) for i in range(SIDECARS)]
    start_all(auths + cars)
    return config, auths, cars, ledgers


def test_three_sidecars_hold_one_cap_across_a_burst(tmp_path: Path, database_url: str) -> None:
    _config, auths, cars, ledgers = start_fleet(tmp_path, database_url, authorities=1)
    try:
        started = time.monotonic()
        codes = asyncio.run(burst(cars))
        elapsed = time.monotonic() - started
        # Their worker threads (the ledger read to ship it, the fdatasync) allocated in the one arena:
        # none of them holds an arena of its own (resident memory, serve_cli.one_malloc_arena).
        assert [thread_heaps(car.process.pid) for car in cars if car.process] == [0] * SIDECARS
    finally:
        stop_all(cars)  # sidecars first: they return their leases to a live authority
        stop_all(auths)
    settled, entries = ledger_total(ledgers)
    print(f"codes={dict(codes)} settled={settled} entries={entries} elapsed={elapsed:.1f}s")
    assert settled <= CAP
    assert settled >= 0.9 * CAP
    assert set(codes) <= {200, 402}, codes
    assert codes[402] > 0 and codes[200] == entries


def test_the_cap_holds_while_sidecars_are_killed_and_replaced_and_an_authority_is_killed_mid_burst(
    tmp_path: Path, database_url: str
) -> None:
    config, auths, cars, ledgers = start_fleet(tmp_path, database_url, authorities=2)
    fresh_ledger = tmp_path / "ledger-fresh"
    fresh = sidecar(config, fresh_ledger, tmp_path / "sidecar-fresh.log", [a.url for a in auths], *FLAGS)
    in_flight: list[int] = []
    at_kill: list[tuple[bytes, float]] = []

    async def chaos(urls: list[str]) -> None:
        await asyncio.sleep(0.5)
        cars[1].kill()  # kill -9 a sidecar holding leases, mid-burst
        journal = (ledgers[1] / JOURNAL_FILE).read_bytes()
        at_kill.append((journal, time.time()))
        in_flight.append(open_at_kill(journal))
        auths[0].kill()  # and one authority process: the sidecars fail over to the other
        cars[2].signal_stop()  # a rollout: this one drains and returns its leases ...
        await asyncio.to_thread(fresh.start)  # ... and a fresh one on a new volume takes its place
        urls[2] = fresh.url
        await asyncio.to_thread(cars[1].start)  # restarted on the same ledger volume

    try:
        started = time.monotonic()
        codes = asyncio.run(burst(cars, chaos))
        print(f"burst {time.monotonic() - started:.1f}s")
    finally:
        started = time.monotonic()
        stop_all([*cars, fresh])  # sidecars first: they return their leases to a live authority
        stop_all(auths)
        print(f"stop {time.monotonic() - started:.1f}s")
    settled, entries = ledger_total([*ledgers, fresh_ledger])
    stranded, charged = stranded_and_charged(database_url)
    (killed_in_flight,) = in_flight
    ((journal, killed_at),) = at_kill
    unheard = never_heard_of(database_url, ledgers[1], journal, killed_at)
    print(
        f"codes={dict(codes)} settled={settled} entries={entries} stranded={stranded} charged={charged}"
        f" in_flight_at_kill={killed_in_flight} granted_unheard_at_kill={unheard}"
    )
    assert settled <= charged <= CAP  # the authority charges at least what the ledgers settled
    assert charged >= 0.9 * CAP  # the fleet used the cap ...
    # ... and every micro-USD it charged beyond the ledgers is a request the killed sidecar had sent
    # upstream at the kill (no ledger line: the kill cut it), charged at its worst case as its restart
    # reported from the journal. So the ledgers hold the cap used, less only what the kill cut; how
    # much that is depends on the moment the kill lands (0-10 % of this cap in practice).
    # (And a lease the kill cut the grant of, charged in full: see ``never_heard_of``.)
    assert charged - settled <= killed_in_flight + unheard
    assert settled >= 0.9 * CAP - killed_in_flight - unheard
    # No lease the killed process knew is left charged in full: its restart corrected them all.
    assert stranded == unheard
    assert set(codes) <= {200, 402, 502}, codes  # 502: a request cut by the kill
    assert codes[402] > 0
