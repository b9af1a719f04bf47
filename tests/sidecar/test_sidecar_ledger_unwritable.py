"""A ledger that cannot be written (full or read-only disk, fault 18): paid requests
are refused with 503 ``ledger_unavailable`` instead of spending untracked, readiness says why, and
the sidecar recovers by itself once the disk takes writes again, losing no entry."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fakes import FakeOpenAI, FakeUsage
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    ledger_lines,
    priced,
    prompt_of,
    render_dir,
    tier,
    wait_for,
)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(usage=FakeUsage(100, 20)) as server:
        yield server


@pytest.fixture
def config(fake: FakeOpenAI, tmp_path: Path) -> Path:
    return render_dir(
        tmp_path / "config",
        [
            connection("openai", "openai", [priced("m-std", 5, 10)], base_url=fake.base_url),
            tier("standard", 10, [("openai", "m-std")]),
            budget("daily", 1.0),
        ],
    )


def ask(sc: SidecarThread) -> httpx.Response:
    body = {"model": "tier:standard", "messages": prompt_of(100), "max_tokens": 20}
    return httpx.post(f"{sc.base_url}/chat/completions", json=body, timeout=10)


def assert_refused_for_the_ledger(response: httpx.Response) -> None:
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "ledger_unavailable" and "ledger" in error["message"]
    assert int(response.headers["retry-after"]) > 0


def metric(sc: SidecarThread, prefix: str) -> str | None:
    for line in httpx.get(f"{sc.ops_url}/metrics").text.splitlines():
        if line.startswith(prefix):
            return line.rsplit(" ", 1)[1]
    return None


def full_disk(*_: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_disk_that_fills_up_refuses_paid_requests_until_it_recovers(
    config, fake, tmp_path, monkeypatch
) -> None:
    with SidecarThread(config, tmp_path / "ledger", access_log=False) as sc:
        ledger = sc.gateway.ledger
        assert ask(sc).status_code == 200
        sc.run_sync(ledger.flush())

        monkeypatch.setattr(os, "fdatasync", full_disk)  # every fsync of the ledger now fails
        monkeypatch.setattr(os, "fsync", full_disk)
        assert ask(sc).status_code == 200  # admitted while healthy; its ledger line cannot be written
        wait_for(lambda: not ledger.healthy, timeout=3)

        refused = ask(sc)
        assert_refused_for_the_ledger(refused)
        assert len(fake.requests) == 2  # the refused request never reached the provider
        ready = httpx.get(f"{sc.ops_url}/readyz")
        assert ready.status_code == 200  # still Ready: the problem is a detail, not a crash loop
        assert "No space left on device" in ready.json()["ledger"]
        assert metric(sc, "sluicegate_ledger_healthy") == "0.0"
        assert metric(sc, 'sluicegate_requests_rejected_total{reason="ledger_unavailable"}') == "1.0"
        # the spend of the request whose line is pending still counts against the budget
        assert refused.headers["x-sluicegate-budget-remaining-usd"] == "0.998600"

        monkeypatch.undo()  # the disk takes writes again
        wait_for(lambda: ledger.healthy, timeout=3)
        assert ask(sc).status_code == 200
        assert metric(sc, "sluicegate_ledger_healthy") == "1.0"
    entries = ledger_lines(tmp_path / "ledger")
    assert [e["status"] for e in entries] == [200, 200, 200]  # the pending line was written, in order
    verify = subprocess.run(
        [sys.executable, "-m", "sluicegate_cli.main", "ledger", "verify", str(tmp_path / "ledger")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_ledger_directory_that_cannot_be_created_refuses_paid_requests_from_the_start(
    config, fake, tmp_path
) -> None:
    blocker = tmp_path / "volume"
    blocker.write_text("a file where the ledger volume should be")
    ledger_dir = blocker / "ledger"
    with SidecarThread(config, ledger_dir, access_log=False) as sc:
        assert_refused_for_the_ledger(ask(sc))
        ready = httpx.get(f"{sc.ops_url}/readyz")
        assert ready.status_code == 200 and str(ledger_dir) in ready.json()["ledger"]
        assert fake.requests == []

        blocker.unlink()  # the volume appears
        wait_for(lambda: sc.gateway.ledger.healthy, timeout=3)
        assert ask(sc).status_code == 200
    assert [e["status"] for e in ledger_lines(ledger_dir)] == [200]
    shutil.rmtree(tmp_path / "volume")
