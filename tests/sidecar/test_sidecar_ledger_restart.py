"""Spend survives a restart: a new sidecar on the same ledger starts from what was already spent."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx

from tests.support.fakes import FakeOpenAI, FakeUsage
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    ledger_lines,
    priced,
    render_dir,
    reserved_prompt_of,
    tier,
    wait_for,
)

COST = 2_800  # micro-USD: 100 prompt tokens at $20/MTok + 20 output tokens at $40/MTok


def ask(sc: SidecarThread) -> httpx.Response:
    body = {"model": "tier:premium", "messages": reserved_prompt_of(100), "max_tokens": 20}
    return httpx.post(f"{sc.base_url}/chat/completions", json=body, timeout=10)


def spent_gauge(sc: SidecarThread) -> str:
    for line in httpx.get(f"{sc.ops_url}/metrics").text.splitlines():
        if line.startswith('sluicegate_budget_spent_usd{policy="daily",scope="all",window="day"}'):
            return line.rsplit(" ", 1)[1]
    raise AssertionError("no sluicegate_budget_spent_usd sample for the policy")


def test_a_restarted_sidecar_remembers_the_spend_of_the_open_window(tmp_path: Path) -> None:
    with FakeOpenAI(usage=FakeUsage(100, 20)) as fake:
        config = render_dir(
            tmp_path / "config",
            [
                connection("openai", "openai", [priced("m-prem", 20, 40)], base_url=fake.base_url),
                tier("premium", 20, [("openai", "m-prem")]),
                budget("daily", 3 * COST / 1e6),
            ],
        )
        ledger_dir = tmp_path / "ledger"
        with SidecarThread(config, ledger_dir, access_log=False) as first:
            assert [ask(first).status_code for _ in range(2)] == [200, 200]
        assert len(ledger_lines(ledger_dir)) == 2  # stopping flushed the ledger

        with SidecarThread(config, ledger_dir, access_log=False) as second:
            assert Decimal(spent_gauge(second)) == Decimal(2 * COST) / 1_000_000
            third = ask(second)
            assert third.status_code == 200
            assert Decimal(third.headers["x-sluicegate-budget-remaining-usd"]) == 0
            refused = ask(second)
            assert refused.status_code == 402 and refused.json()["error"]["code"] == "budget_exceeded"
        assert len(fake.requests) == 3

    verify = subprocess.run(
        [sys.executable, "-m", "sluicegate_cli.main", "ledger", "verify", str(ledger_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert [e["seq"] for e in ledger_lines(ledger_dir)] == [1, 2, 3]


def test_spend_is_restored_when_the_config_arrives_after_startup(tmp_path: Path) -> None:
    with FakeOpenAI(usage=FakeUsage(100, 20)) as fake:
        config = render_dir(
            tmp_path / "config",
            [
                connection("openai", "openai", [priced("m-prem", 20, 40)], base_url=fake.base_url),
                tier("premium", 20, [("openai", "m-prem")]),
                budget("daily", 3 * COST / 1e6),
            ],
        )
        ledger_dir = tmp_path / "ledger"
        with SidecarThread(config, ledger_dir, access_log=False) as first:
            assert [ask(first).status_code for _ in range(2)] == [200, 200]

        (config / "..data").rename(config / "..away")  # the Secret volume is not there yet
        with SidecarThread(config, ledger_dir, access_log=False) as second:
            assert httpx.get(f"{second.ops_url}/readyz").status_code == 503
            (config / "..away").rename(config / "..data")
            wait_for(lambda: httpx.get(f"{second.ops_url}/readyz").status_code == 200, timeout=5)
            wait_for(lambda: second.gateway.spend_restored, timeout=5)
            assert Decimal(spent_gauge(second)) == Decimal(2 * COST) / 1_000_000
            assert Decimal(ask(second).headers["x-sluicegate-budget-remaining-usd"]) == 0
