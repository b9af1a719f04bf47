"""Fleet mode's failure behaviour with real processes: an authority that goes away and comes back, a
sidecar that shuts down gracefully, a kill switch that only the authority has seen yet."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import psycopg

from sluicegate_contract.ledgerfiles import read_entries
from tests.support.fleet import authority, sidecar, start_all, stop_all
from tests.support.sidecar_harness import budget, connection, priced, render_dir

CAP_USD = 0.3
FLAGS = ("--lease-refresh-seconds", "0.25", "--budget-wait-seconds", "1")


def resources(**budget_spec) -> list:
    return [
        connection("mock", "mock", [priced("mock-small", input_per_mtok=2.0, output_per_mtok=100.0)]),
        budget("team-cap", CAP_USD, **budget_spec),
    ]


def chat(url: str) -> httpx.Response:
    body = {"model": "mock-small", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def account(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT settled, leased FROM budget_accounts").fetchone()
    assert row is not None
    return row


def gauge(car, name: str) -> float:
    text = httpx.get(car.health_url.replace("/readyz", "/metrics"), timeout=10).text
    (line,) = [
        line for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{")
    ]
    return float(line.rsplit(" ", 1)[1])


def ledger_sum(directory: Path) -> int:
    return sum(entry.cost_micro_usd for entry in read_entries([directory]))


def test_an_unreachable_authority_leaves_the_lease_then_503_and_on_its_return_and_a_graceful_stop_the_accounts_equal_the_ledger(
    tmp_path: Path, database_url: str
) -> None:
    config = render_dir(tmp_path / "config", resources())
    auth = authority([config], database_url, tmp_path / "authority.log", ttl=3.0)
    car = sidecar(config, tmp_path / "ledger", tmp_path / "sidecar.log", [auth.url], *FLAGS)
    start_all([auth, car])
    try:
        for _ in range(3):
            assert chat(car.url).status_code == 200
        time.sleep(0.6)  # a background sync tops the lease up ahead of need
        assert gauge(car, "sluicegate_budget_authority_up") == 1
        assert gauge(car, "sluicegate_leases_held") >= 1
        assert gauge(car, "sluicegate_lease_room_usd") > 0
        auth.kill()
        served_after, refused = 0, None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            response = chat(car.url)
            if response.status_code != 200:
                refused = response
                break
            served_after += 1
        assert served_after > 0  # the unexpired lease kept serving
        assert refused is not None and refused.status_code == 503
        assert refused.headers["retry-after"]
        assert refused.json()["error"]["code"] == "budget_authority_unavailable"
        assert gauge(car, "sluicegate_budget_authority_up") == 0
        auth.start()  # back, on the same database and port
        deadline = time.monotonic() + 15
        while chat(car.url).status_code != 200:
            assert time.monotonic() < deadline, "the sidecar did not come back to the authority"
            time.sleep(0.2)
        assert car.terminate() == 0  # graceful: reports and returns every lease
        settled, leased = account(database_url)
    finally:
        stop_all([car])
        stop_all([auth])
    assert leased == 0
    assert settled == ledger_sum(tmp_path / "ledger")  # the expired lease was corrected to the ledger


def test_a_kill_switch_the_authority_has_seen_stops_a_sidecar_within_a_lease_refresh(
    tmp_path: Path, database_url: str
) -> None:
    sidecar_config = render_dir(tmp_path / "config", resources())
    authority_config = tmp_path / "authority-config"
    shutil.copytree(sidecar_config, authority_config, symlinks=True)
    auth = authority([authority_config], database_url, tmp_path / "authority.log")
    car = sidecar(sidecar_config, tmp_path / "ledger", tmp_path / "sidecar.log", [auth.url], *FLAGS)
    start_all([auth, car])
    try:
        assert chat(car.url).status_code == 200
        render_dir(authority_config, resources(killSwitch=True))  # the sidecar's own copy lags behind
        switched = time.monotonic()
        while (response := chat(car.url)).status_code == 200:
            assert time.monotonic() - switched < 5.0, "the kill switch took longer than 5 s"
            time.sleep(0.05)
    finally:
        stop_all([car])
        stop_all([auth])
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "kill_switch"
