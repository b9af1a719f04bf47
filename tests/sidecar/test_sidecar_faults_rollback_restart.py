"""fault 34: the sidecar remembers the newest serial it accepted on its own volume (the ledger
directory), so a validly signed older config in place when it restarts — say one with a higher
cap — is refused, and with nothing newer to serve the sidecar is not ready. The very config it
accepted before (same serial, same bytes) is fine after a restart; a damaged record is reported,
never a reason to refuse service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from sluicegate_contract.configdir import read_sealed, write_sealed
from sluicegate_sidecar.serialstate import STATE_FILE
from tests.sidecar.conftest import OPENAI_KEY
from tests.support.fakes import FakeOpenAI
from tests.support.sidecar_harness import (
    SidecarThread,
    budget,
    connection,
    metric_value,
    render_dir,
    tier,
    wait_until,
)

POLL = 0.05


def resources(openai_up: FakeOpenAI, cap_usd: float) -> list[Any]:
    return [
        connection("openai", "openai", ["gpt-4o-mini"], base_url=openai_up.base_url, key=OPENAI_KEY),
        tier("standard", 10, [("openai", "gpt-4o-mini")]),
        budget("daily", cap_usd),
    ]


def chat(sidecar: SidecarThread) -> httpx.Response:
    body = {"model": "tier:standard", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    return httpx.post(f"{sidecar.base_url}/chat/completions", json=body, timeout=10)


def readiness(sidecar: SidecarThread) -> httpx.Response:
    return httpx.get(f"{sidecar.ops_url}/readyz", timeout=5)


def test_an_older_validly_signed_config_in_place_at_restart_is_refused_and_the_sidecar_is_not_ready(
    tmp_path: Path, openai_up: FakeOpenAI
) -> None:
    config_dir, ledger = tmp_path / "cfg", tmp_path / "ledger"
    older = read_sealed(render_dir(config_dir, resources(openai_up, cap_usd=1000.0)))  # serial 1: big cap
    newer = read_sealed(render_dir(config_dir, resources(openai_up, cap_usd=0.5)))  # serial 2: cut
    with SidecarThread(config_dir, ledger, poll_interval=POLL) as sc:
        assert readiness(sc).json()["configSerial"] == 2
        assert chat(sc).status_code == 200

    write_sealed(config_dir, *older)  # rolled back while the sidecar was down
    with SidecarThread(config_dir, ledger, poll_interval=POLL) as sc:
        probe = readiness(sc)
        assert probe.status_code == 503
        assert probe.json()["configSerial"] is None
        assert probe.json()["lastRejection"].startswith("rollback: serial 1 is older than serial 2")
        assert chat(sc).json()["error"]["code"] == "not_ready"
        assert metric_value(sc, "sluicegate_config_rejected_total", reason="rollback") == 1

        write_sealed(config_dir, *newer)  # the config accepted before: the same serial and bytes
        wait_until(lambda: readiness(sc).status_code == 200)
        assert readiness(sc).json()["configSerial"] == 2
        assert chat(sc).status_code == 200


def test_a_restart_with_the_config_accepted_before_still_in_place_serves_it(
    tmp_path: Path, openai_up: FakeOpenAI
) -> None:
    config_dir, ledger = tmp_path / "cfg", tmp_path / "ledger"
    render_dir(config_dir, resources(openai_up, cap_usd=5.0))
    for _ in range(2):
        with SidecarThread(config_dir, ledger, poll_interval=POLL) as sc:
            assert readiness(sc).status_code == 200 and chat(sc).status_code == 200
            assert metric_value(sc, "sluicegate_config_rejected_total") == 0
    assert json.loads((ledger / STATE_FILE).read_text())["serial"] == 1


def test_the_same_serial_with_other_content_after_a_restart_is_refused(
    tmp_path: Path, openai_up: FakeOpenAI
) -> None:
    config_dir, ledger = tmp_path / "cfg", tmp_path / "ledger"
    render_dir(config_dir, resources(openai_up, cap_usd=0.5), serial=7)
    with SidecarThread(config_dir, ledger, poll_interval=POLL) as sc:
        assert readiness(sc).json()["configSerial"] == 7
    render_dir(config_dir, resources(openai_up, cap_usd=1000.0), serial=7)  # signed, same serial
    with SidecarThread(config_dir, ledger, poll_interval=POLL) as sc:
        probe = readiness(sc)
        assert probe.status_code == 503 and probe.json()["lastRejection"].startswith("rollback: serial 7")


def test_a_damaged_serial_record_is_reported_never_bricks_the_sidecar_and_is_rewritten(
    tmp_path: Path, openai_up: FakeOpenAI
) -> None:
    config_dir, ledger = tmp_path / "cfg", tmp_path / "ledger"
    render_dir(config_dir, resources(openai_up, cap_usd=5.0))
    ledger.mkdir()
    (ledger / STATE_FILE).write_bytes(b'{"serial": 3, "sha')  # torn by a disk fault
    with SidecarThread(config_dir, ledger, poll_interval=POLL) as sc:
        probe = readiness(sc)
        assert probe.status_code == 200, probe.text
        # the damage was reported at startup, then the record was rewritten for the accepted config
        assert probe.json()["rollbackGuard"] == "ok"
        assert chat(sc).status_code == 200
    assert json.loads((ledger / STATE_FILE).read_text())["serial"] == 1


def test_a_serial_record_that_cannot_be_written_is_reported_and_the_config_still_serves(
    tmp_path: Path, openai_up: FakeOpenAI
) -> None:
    config_dir, ledger = tmp_path / "cfg", tmp_path / "ledger"
    render_dir(config_dir, resources(openai_up, cap_usd=5.0))
    ledger.mkdir()
    (ledger / STATE_FILE).mkdir()  # a directory where the record goes: every write fails
    with SidecarThread(config_dir, ledger, poll_interval=POLL) as sc:
        probe = readiness(sc)
        assert probe.status_code == 200, probe.text
        assert probe.json()["rollbackGuard"].startswith("cannot record the accepted serial")
        assert chat(sc).status_code == 200
