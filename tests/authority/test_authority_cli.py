"""``sluicegate authority`` standalone: loopback by default; beyond it only as in a cluster — over TLS (a
sidecar checks the certificate with ``--budget-authority-ca``) with callers' tokens checked by a
TokenReview — or with an explicit ``--insecure-listen``."""

from __future__ import annotations

import asyncio
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
from tests.support.kmocksupport import SluicegateKubernetes, script_token_reviews
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
    ("host", "tls", "reviewed", "insecure", "allowed"),
    [
        ("127.0.0.1", False, False, False, True),
        ("::1", False, False, False, True),
        ("localhost", False, False, False, True),
        ("0.0.0.0", False, False, False, False),
        ("10.1.2.3", False, False, False, False),
        ("authority.example", False, False, False, False),
        ("0.0.0.0", True, False, False, False),
        ("0.0.0.0", False, True, False, False),
        ("0.0.0.0", True, True, False, True),
        ("0.0.0.0", False, False, True, True),
    ],
)
def test_beyond_loopback_only_tls_with_token_review_or_an_explicit_opt_in_is_served(
    host: str, tls: bool, reviewed: bool, insecure: bool, allowed: bool
) -> None:
    assert (exposure(host, tls=tls, reviewed=reviewed, insecure=insecure) is None) is allowed


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
    assert "--token-review" in done.stderr


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


TOKENS = {
    "token-default": {"username": "system:serviceaccount:default:app", "audiences": ["sluicegate"]},
    "token-other": {"username": "system:serviceaccount:other:app", "audiences": ["sluicegate"]},
}


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: operator}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n",
        encoding="utf-8",
    )
    return path


def sync_as(url: str, token: str | None, verify: ssl.SSLContext) -> int:
    body = {"namespace": "default", "sidecarId": "intruder", "asks": []}
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(
        f"{url}/v1/leases/sync", json=body, headers=headers, verify=verify, timeout=10
    ).status_code


@pytest.mark.kmock(cls=SluicegateKubernetes)
async def test_beyond_loopback_over_tls_with_token_review_a_sidecar_with_its_token_holds_leases_and_no_one_else_gets_through(
    kmock, tmp_path: Path, database_url: str
) -> None:
    script_token_reviews(kmock, TOKENS)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    (tmp_path / "token").write_text("token-default\n", encoding="utf-8")
    config_dir = config(tmp_path)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    flags = ["--tls-cert", str(cert), "--tls-key", str(key), "--token-review",
             "--kubeconfig", str(kubeconfig(tmp_path / "kubeconfig", str(kmock.url)))]  # fmt: skip
    auth = Proc(
        argv(config_dir, f"0.0.0.0:{port}", *flags),
        _env({"SLUICEGATE_DATABASE_URL": database_url}),
        tmp_path / "authority.log",
        f"{url}/healthz",
        url,
    )
    trusting = ssl.create_default_context(cafile=str(ca_file))
    car = sidecar(config_dir, tmp_path / "ledger", tmp_path / "sidecar.log", [url],
                  "--budget-authority-ca", str(ca_file), "--token-file", str(tmp_path / "token"))  # fmt: skip
    auth.launch()
    try:
        await asyncio.to_thread(wait_https, f"{url}/healthz", auth, trusting)
        await asyncio.to_thread(car.start)
        body = {"model": "mock-small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        response = await asyncio.to_thread(
            httpx.post, f"{car.url}/v1/chat/completions", json=body, timeout=30
        )
        assert response.status_code == 200
        with psycopg.connect(database_url) as conn:
            (leases,) = conn.execute("SELECT count(*) FROM budget_leases").fetchone()
        assert leases >= 1  # the lease came over TLS, for the sidecar's token
        assert await asyncio.to_thread(sync_as, url, None, trusting) == 401
        assert await asyncio.to_thread(sync_as, url, "forged", trusting) == 401
        assert await asyncio.to_thread(sync_as, url, "token-other", trusting) == 403  # not its namespace
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA
            await asyncio.to_thread(httpx.get, f"{url}/healthz", timeout=5)
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port
            await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        await asyncio.to_thread(stop_all, [car])
        await asyncio.to_thread(stop_all, [auth])
    assert "budget authority listening on https://0.0.0.0" in auth.log.read_text()
