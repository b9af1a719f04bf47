"""Fault 35 (docs/architecture.md) with a real network cut: a sidecar in its own network namespace
loses its path to the authority (the veth pair goes down) while it keeps running and serving its own
callers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from sluicegate_contract.ledgerfiles import read_entries
from tests.support.fleet import Proc, authority, sidecar, stop_all
from tests.support.netns import NetNamespace, unavailable_reason
from tests.support.sidecar_harness import budget, connection, priced, render_dir

CAP_USD = 0.05
CAP_MICRO = 50_000
FLAGS = ("--lease-refresh-seconds", "0.25", "--budget-wait-seconds", "1")

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


@pytest.fixture
def namespace() -> Iterator[NetNamespace]:
    ns = NetNamespace.create()
    try:
        yield ns
    finally:
        ns.delete()


def chat(url: str) -> httpx.Response:
    body = {"model": "mock-small", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def gauge(car: Proc, name: str) -> float:
    text = httpx.get(car.health_url.replace("/readyz", "/metrics"), timeout=10).text
    (line,) = [
        line for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{")
    ]
    return float(line.rsplit(" ", 1)[1])


def account(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT settled, leased FROM budget_accounts").fetchone()
    assert row is not None
    return row


def ledger_sum(directory: Path) -> int:
    return sum(entry.cost_micro_usd for entry in read_entries([directory]))


def test_a_sidecar_cut_off_by_the_network_serves_its_lease_then_503_the_fleet_stays_under_the_cap_and_on_reconnect_the_accounts_equal_the_ledgers(
    tmp_path: Path, database_url: str, namespace: NetNamespace
) -> None:
    config = render_dir(
        tmp_path / "config",
        [
            connection("mock", "mock", [priced("mock-small", input_per_mtok=2.0, output_per_mtok=100.0)]),
            budget("team-cap", CAP_USD),
        ],
    )
    # Leases live 4 s (valid 3.2 s from a sync): room for the first request after the cut on a loaded machine.
    auth = authority([config], database_url, tmp_path / "authority.log", ttl=4.0, host=namespace.host_address)
    cut_dir, free_dir = tmp_path / "ledger-cut", tmp_path / "ledger-free"
    cut = sidecar(config, cut_dir, tmp_path / "cut.log", [auth.url], *FLAGS, prefix=tuple(namespace.prefix()))
    free = sidecar(config, free_dir, tmp_path / "free.log", [auth.url], *FLAGS)
    for proc in (auth, cut, free):
        proc.launch()
    auth.ready()
    free.ready()
    namespace.run(cut.ready)  # its ports are on the namespace's loopback: reached from inside only
    try:
        for _ in range(3):
            assert namespace.run(lambda: chat(cut.url)).status_code == 200
        time.sleep(0.6)  # a background sync tops the lease up ahead of need
        assert namespace.run(lambda: gauge(cut, "sluicegate_lease_room_usd")) > 0

        namespace.cut()
        served_after, refused = 0, None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            response = namespace.run(lambda: chat(cut.url))
            if response.status_code != 200:
                refused = response
                break
            served_after += 1
        assert served_after > 0  # the unexpired lease kept serving with no path to the authority
        assert refused is not None and refused.status_code == 503, refused and refused.text
        assert refused.headers["retry-after"]
        assert refused.json()["error"]["code"] == "budget_authority_unavailable"
        assert namespace.run(lambda: gauge(cut, "sluicegate_budget_authority_up")) == 0

        # The connected sidecar spends the rest of the cap meanwhile: the cut lease is charged in full.
        deadline = time.monotonic() + 15
        while (response := chat(free.url)).status_code in (200, 503):
            assert time.monotonic() < deadline, "the connected sidecar never reached the cap"
            if response.status_code == 503:  # its authority slow to answer on a loaded machine: a client
                assert response.headers["retry-after"]  # retries, as the SDKs do on a 503
                time.sleep(0.2)
        assert response.status_code == 402, response.text
        assert ledger_sum(cut_dir) + ledger_sum(free_dir) <= CAP_MICRO

        namespace.reconnect()
        deadline = time.monotonic() + 15
        while namespace.run(lambda: gauge(cut, "sluicegate_budget_authority_up")) != 1:
            assert time.monotonic() < deadline, "the cut sidecar did not reach the authority again"
            time.sleep(0.2)
        total = ledger_sum(cut_dir) + ledger_sum(free_dir)
        deadline = time.monotonic() + 10
        while account(database_url)[0] != total:  # the replayed reports correct the full charge
            assert time.monotonic() < deadline, f"accounts {account(database_url)} != ledgers {total}"
            time.sleep(0.2)
        assert namespace.run(lambda: chat(cut.url)).status_code in (200, 402)  # serving again, never 503
        assert cut.terminate() == 0 and free.terminate() == 0  # graceful: every lease reported final
        settled, leased = account(database_url)
    finally:
        stop_all([cut, free])
        stop_all([auth])
    total = ledger_sum(cut_dir) + ledger_sum(free_dir)
    assert leased == 0
    assert settled == total
    assert total <= CAP_MICRO
