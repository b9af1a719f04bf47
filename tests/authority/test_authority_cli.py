"""``sluicegate authority`` standalone: loopback by default; beyond it only over TLS (a sidecar checks the
certificate with ``--budget-authority-ca``) or with an explicit ``--insecure-listen``."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
import trustme

from sluicegate_operator.authority.authority_cli import exposure
from tests.support.fleet import Proc, _env, sidecar, stop_all
from tests.support.sidecar_harness import budget, connection, free_port, priced, render_dir


def config(tmp_path: Path) -> Path:
    return render_dir(
        tmp_path / "config",
        [connection("mock", "mock", [priced("mock-small")]), budget("team-cap", 1.0)],
    )


def argv(config_dir: Path, listen: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sluicegate_cli", "authority", "--config", str(config_dir), "--listen", listen,
            "--poll-seconds", "0.5", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("host", "tls", "insecure", "allowed"),
    [
        ("127.0.0.1", False, False, True),
        ("::1", False, False, True),
        ("localhost", False, False, True),
        ("0.0.0.0", False, False, False),
        ("10.1.2.3", False, False, False),
        ("authority.example", False, False, False),
        ("0.0.0.0", True, False, True),
        ("0.0.0.0", False, True, True),
    ],
)
def test_only_loopback_may_be_served_in_plain_http_without_an_explicit_opt_in(
    host: str, tls: bool, insecure: bool, allowed: bool
) -> None:
    assert (exposure(host, tls=tls, insecure=insecure) is None) is allowed


def test_a_non_loopback_listen_in_plain_http_is_refused_at_start_naming_the_way_out(tmp_path: Path) -> None:
    done = subprocess.run(
        argv(config(tmp_path), f"0.0.0.0:{free_port()}"),
        env=_env({"SLUICEGATE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert (
        "not loopback" in done.stderr and "--tls-cert" in done.stderr and "--insecure-listen" in done.stderr
    )


def wait_https(url: str, proc: Proc, verify: ssl.SSLContext) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.process is not None and proc.process.poll() is None, proc.log.read_text()[-2000:]
        try:
            if httpx.get(url, verify=verify, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(proc.log.read_text()[-2000:])


def test_over_tls_beyond_loopback_a_sidecar_trusting_the_ca_holds_leases_and_no_one_else_gets_through(
    tmp_path: Path, database_url: str
) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    config_dir = config(tmp_path)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    auth = Proc(
        argv(config_dir, f"0.0.0.0:{port}", "--tls-cert", str(cert), "--tls-key", str(key)),
        _env({"SLUICEGATE_DATABASE_URL": database_url}),
        tmp_path / "authority.log",
        f"{url}/healthz",
        url,
    )
    trusting = ssl.create_default_context(cafile=str(ca_file))
    auth.launch()
    car = sidecar(
        config_dir,
        tmp_path / "ledger",
        tmp_path / "sidecar.log",
        [url],
        "--budget-authority-ca",
        str(ca_file),
    )
    try:
        wait_https(f"{url}/healthz", auth, trusting)
        car.start()
        body = {"model": "mock-small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        response = httpx.post(f"{car.url}/v1/chat/completions", json=body, timeout=30)
        assert response.status_code == 200
        with psycopg.connect(database_url) as conn:
            (leases,) = conn.execute("SELECT count(*) FROM budget_leases").fetchone()
        assert leases >= 1  # the lease came over TLS
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA
            httpx.get(f"{url}/healthz", timeout=5)
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        stop_all([car])
        stop_all([auth])
    assert "budget authority listening on https://0.0.0.0" in auth.log.read_text()
