"""failMode with real processes: a budget authority on a real PostgreSQL is killed; a sidecar whose
policy is ``closed`` answers 503 once its lease is spent, one whose policy is ``static`` serves its
allowance first (never more) and then 503; once the authority is back the accounts equal the ledgers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psycopg

from tests.fleet.test_fleet_faults import chat, ledger_sum
from tests.support.fleet import authority, sidecar, start_all, stop_all
from tests.support.sidecar_harness import budget, connection, priced, render_dir

CAP_USD = 0.3
ALLOWANCE_USD = 0.01
FLAGS = ("--lease-refresh-seconds", "0.25", "--budget-wait-seconds", "1")


def resources() -> list:
    """One policy per app (Pod label ``app``): ``closed`` and ``static``."""
    static = {"failMode": "static", "staticAllowance": {"amountUSD": ALLOWANCE_USD, "seconds": 60}}
    return [
        connection("mock", "mock", [priced("mock-small", input_per_mtok=2.0, output_per_mtok=100.0)]),
        budget("closed", CAP_USD, selector={"matchLabels": {"app": "closed"}}),
        budget("static", CAP_USD, selector={"matchLabels": {"app": "static"}}, **static),
    ]


def labelled(tmp_path: Path, app: str) -> tuple[str, str]:
    path = tmp_path / f"labels-{app}"
    path.write_text(f'app="{app}"\n', encoding="utf-8")
    return ("--labels-file", str(path))


def accounts(database_url: str) -> dict[str, tuple[int, int]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT policy, settled, leased FROM budget_accounts").fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


def offline_reports(database_url: str) -> dict[str, list[tuple[int, int]]]:
    """(allowance, reported spend) of the leases sidecars opened themselves, per policy."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT policy, amount, reported FROM budget_leases WHERE state = 'closed' AND amount > 0"
            " AND created_at = expires_at"
        ).fetchall()
    found: dict[str, list[tuple[int, int]]] = {}
    for policy, amount, reported in rows:
        found.setdefault(policy, []).append((amount, reported))
    return found


def until_refused(url: str, ledger: Path, patience: float = 40.0) -> tuple[httpx.Response, int]:
    """Serve requests until one is refused; returns it and the ledger's spend before it (micro-USD)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        response = chat(url)
        if response.status_code != 200:
            return response, ledger_sum(ledger)
    raise AssertionError("never refused")


def test_with_the_authority_killed_closed_answers_503_static_serves_its_allowance_then_503_and_back_the_accounts_equal_the_ledgers(
    tmp_path: Path, database_url: str
) -> None:
    config = render_dir(tmp_path / "config", resources())
    auth = authority([config], database_url, tmp_path / "authority.log", ttl=3.0)
    closed_ledger, static_ledger = tmp_path / "ledger-closed", tmp_path / "ledger-static"
    closed = sidecar(
        config, closed_ledger, tmp_path / "closed.log", [auth.url], *FLAGS, *labelled(tmp_path, "closed")
    )
    fallback = sidecar(
        config, static_ledger, tmp_path / "static.log", [auth.url], *FLAGS, *labelled(tmp_path, "static")
    )
    start_all([auth, closed, fallback])
    try:
        for car in (closed, fallback):
            for _ in range(3):
                assert chat(car.url).status_code == 200
        time.sleep(0.6)  # background syncs top the leases up ahead of need
        auth.kill()
        # all the authority had granted, read once it is gone (nothing can move the accounts now)
        granted = {ns: settled + leased for ns, (settled, leased) in accounts(database_url).items()}
        refused_closed, spent_closed = until_refused(closed.url, closed_ledger)
        refused_static, spent_static = until_refused(fallback.url, static_ledger)
        for refused in (refused_closed, refused_static):
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "budget_authority_unavailable"
            assert refused.headers["retry-after"]
        # closed: nothing beyond what the authority had granted (its lease)
        assert spent_closed <= granted["closed"]
        # static: the allowance on top of the lease, and at most that
        allowance = round(ALLOWANCE_USD * 1_000_000)
        assert spent_static > granted["static"]  # beyond what the authority had granted (below: how far)
        assert spent_static <= granted["static"] + allowance
        auth.start()  # back, on the same database and port
        for car in (closed, fallback):
            deadline = time.monotonic() + 15
            while chat(car.url).status_code != 200:
                assert time.monotonic() < deadline, "a sidecar did not come back to the authority"
                time.sleep(0.2)
        assert closed.terminate() == 0
        assert fallback.terminate() == 0
        found = accounts(database_url)
        reports = offline_reports(database_url)
    finally:
        stop_all([closed, fallback])
        stop_all([auth])
    assert found["closed"] == (ledger_sum(closed_ledger), 0)
    assert found["static"] == (ledger_sum(static_ledger), 0)  # the allowance's spend included
    assert "closed" not in reports
    ((amount, reported),) = reports["static"]
    assert amount == allowance and allowance * 0.9 < reported <= allowance


def leases(database_url: str) -> list[tuple[str, int, int]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT state, amount, reported FROM budget_leases").fetchall()


def test_a_sidecar_killed_while_serving_its_static_allowance_reports_that_spend_after_a_restart_on_its_volume(
    tmp_path: Path, database_url: str
) -> None:
    config = render_dir(tmp_path / "config", resources())
    auth = authority([config], database_url, tmp_path / "authority.log", ttl=3.0)
    ledger = tmp_path / "ledger-static"
    car = sidecar(config, ledger, tmp_path / "static.log", [auth.url], *FLAGS, *labelled(tmp_path, "static"))
    start_all([auth, car])
    try:
        for _ in range(3):
            assert chat(car.url).status_code == 200
        time.sleep(0.6)  # background syncs top the lease up ahead of need
        auth.kill()
        granted = sum(accounts(database_url)["static"])
        refused, spent = until_refused(car.url, ledger)  # the lease, then the allowance, then 503
        assert refused.status_code == 503
        assert spent > granted  # part of the ledger's spend is the allowance's, known to no authority
        car.kill()  # kill -9 mid-outage: the allowance's spend was never reported
        auth.start()  # back, on the same database and port
        car.start()  # restarted on the same volume: its journal names the offline lease
        deadline = time.monotonic() + 15
        while "static" not in offline_reports(database_url) or any(
            state in ("open", "expired") for state, _, _ in leases(database_url)
        ):
            assert time.monotonic() < deadline, (leases(database_url), accounts(database_url))
            time.sleep(0.2)
        assert chat(car.url).status_code == 200  # and it serves again
        assert car.terminate() == 0
        found = accounts(database_url)
        reports = offline_reports(database_url)
    finally:
        stop_all([car])
        stop_all([auth])
    assert found["static"] == (ledger_sum(ledger), 0)  # the allowance's spend included, nothing leased
    ((amount, reported),) = reports["static"]
    allowance = round(ALLOWANCE_USD * 1_000_000)
    assert amount <= allowance and allowance * 0.9 < reported <= allowance
