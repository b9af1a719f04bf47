"""``sluicegate authority`` as a real process over a real PostgreSQL: syncs, accounts, configs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec
import psycopg
import pytest

from sluicegate_contract.authority import (
    AccountsReply,
    LeaseAsk,
    ScopeRef,
    SyncReply,
    SyncRequest,
)
from tests.support.fleet import authority
from tests.support.sidecar_harness import budget, connection, render_dir

SCOPE = ScopeRef(policy="team-cap", window="day")


def resources(**budget_spec) -> list:
    return [connection("mock", "mock", ["mock-small"]), budget("team-cap", 0.01, **budget_spec)]


def sync(url: str, *asks: LeaseAsk, sidecar: str = "s1", namespace: str = "default") -> httpx.Response:
    body = msgspec.json.encode(SyncRequest(namespace=namespace, sidecar_id=sidecar, asks=asks))
    return httpx.post(f"{url}/v1/leases/sync", content=body, timeout=10)


def lease_reply(response: httpx.Response) -> SyncReply:
    assert response.status_code == 200, response.text
    return msgspec.json.decode(response.content, type=SyncReply)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return render_dir(tmp_path / "config", resources())


def test_a_sidecar_gets_a_lease_within_the_signed_cap_and_the_account_shows_it(
    tmp_path: Path, config_dir: Path, database_url: str
) -> None:
    proc = authority([config_dir], database_url, tmp_path / "authority.log").start()
    try:
        (grant,) = lease_reply(sync(proc.url, LeaseAsk(scope=SCOPE, want_micro_usd=25_000))).leases
        (second,) = lease_reply(
            sync(proc.url, LeaseAsk(scope=SCOPE, want_micro_usd=25_000), sidecar="s2")
        ).leases
        accounts = httpx.get(f"{proc.url}/v1/accounts", params={"namespace": "default"}, timeout=10)
    finally:
        assert proc.terminate() == 0
    assert (grant.state, grant.amount_micro_usd, grant.ttl_ms) == ("open", 10_000, 10_000)
    assert second.lease_id is None and second.refusal == "budget_exceeded"
    (account,) = msgspec.json.decode(accounts.content, type=AccountsReply).accounts
    assert (account.cap_micro_usd, account.leased_micro_usd, account.holders) == (10_000, 10_000, 1)


def test_a_kill_switch_in_a_new_config_reaches_lease_holders_at_their_next_sync(
    tmp_path: Path, config_dir: Path, database_url: str
) -> None:
    proc = authority([config_dir], database_url, tmp_path / "authority.log").start()
    try:
        (grant,) = lease_reply(sync(proc.url, LeaseAsk(scope=SCOPE, want_micro_usd=1_000))).leases
        render_dir(config_dir, resources(killSwitch=True))
        deadline = time.monotonic() + 5
        while True:
            ask = LeaseAsk(scope=SCOPE, lease_id=grant.lease_id, want_micro_usd=1_000)
            (renewed,) = lease_reply(sync(proc.url, ask)).leases
            if renewed.refusal == "kill_switch" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        proc.terminate()
    assert (renewed.refusal, renewed.ttl_ms) == ("kill_switch", 0)


def test_a_config_whose_signature_does_not_verify_is_not_served(
    tmp_path: Path, config_dir: Path, database_url: str
) -> None:
    sig = config_dir / "config.sig"
    sig.resolve().write_bytes(b"AAAA" + sig.read_bytes()[4:])
    proc = authority([config_dir], database_url, tmp_path / "authority.log").start()
    try:
        refused = sync(proc.url, LeaseAsk(scope=SCOPE, want_micro_usd=1_000))
        malformed = httpx.post(f"{proc.url}/v1/leases/sync", content=b'{"namespace": 1}', timeout=10)
    finally:
        proc.terminate()
    assert refused.status_code == 404 and refused.json()["error"] == "unknown_namespace"
    assert malformed.status_code == 400
    assert "refused (bad_signature)" in (tmp_path / "authority.log").read_text()


def test_a_lost_database_answers_503_and_the_authority_stays_up(
    tmp_path: Path, config_dir: Path, database_url: str, postgres_server
) -> None:
    proc = authority([config_dir], database_url, tmp_path / "authority.log").start()
    name = database_url.rsplit("/", 1)[1]
    try:
        with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        down = sync(proc.url, LeaseAsk(scope=SCOPE, want_micro_usd=1_000))
        alive = httpx.get(f"{proc.url}/healthz", timeout=5)
    finally:
        proc.terminate()
    assert down.status_code == 503 and down.json()["error"] == "database_unavailable"
    assert alive.status_code == 200


def test_the_authority_without_a_database_url_says_what_to_set(tmp_path: Path, config_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sluicegate_cli", "authority", "--config", str(config_dir)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 2
    assert "SLUICEGATE_DATABASE_URL" in done.stderr
