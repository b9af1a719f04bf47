"""fault 13, cold start: a sidecar with no valid config is not ready (the startup probe fails, so the
native sidecar holds the app back) and answers API calls 503 ``not_ready``; once a valid config is
written it becomes ready, without a restart."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate_contract.configdir import KEYS_DIR, read_sealed, write_sealed
from sluicegate_operator.render_cli import load_or_create_keys
from tests.sidecar.conftest import OPENAI_KEY
from tests.support.fakes import FakeOpenAI
from tests.support.sidecar_harness import (
    SidecarThread,
    connection,
    metric_value,
    render_dir,
    tier,
    wait_until,
)


def resources(openai_up: FakeOpenAI) -> list[Any]:
    return [
        connection("openai", "openai", ["gpt-4o-mini"], base_url=openai_up.base_url, key=OPENAI_KEY),
        tier("standard", 10, [("openai", "gpt-4o-mini")]),
    ]


def chat(sidecar: SidecarThread) -> httpx.Response:
    body = {"model": "tier:standard", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{sidecar.base_url}/chat/completions", json=body, timeout=10)


def readiness(sidecar: SidecarThread) -> httpx.Response:
    return httpx.get(f"{sidecar.ops_url}/readyz", timeout=5)


def no_config(config_dir: Path, scratch: Path, openai_up: FakeOpenAI) -> str:
    load_or_create_keys(config_dir)  # trusted keys in place, but nothing sealed yet
    return "missing"


def signed_by_an_unknown_key(config_dir: Path, scratch: Path, openai_up: FakeOpenAI) -> str:
    load_or_create_keys(config_dir)
    render_dir(scratch, resources(openai_up))  # someone else's operator keys
    write_sealed(config_dir, *read_sealed(scratch))
    return "unknown_signing_key"


def sealed_for_another_namespace(config_dir: Path, scratch: Path, openai_up: FakeOpenAI) -> str:
    load_or_create_keys(config_dir)
    shutil.copytree(config_dir / KEYS_DIR, scratch / KEYS_DIR)
    render_dir(scratch, resources(openai_up), namespace="payments")  # validly signed, wrong namespace
    write_sealed(config_dir, *read_sealed(scratch))
    return "wrong_namespace"


@pytest.mark.parametrize(
    "prepare",
    [no_config, signed_by_an_unknown_key, sealed_for_another_namespace],
    ids=["empty-dir", "unknown-signing-key", "another-namespace"],
)
def test_a_sidecar_without_a_valid_config_is_not_ready_until_one_is_written(
    tmp_path: Path, openai_up: FakeOpenAI, prepare: Any
) -> None:
    config_dir = tmp_path / "cfg"
    reason = prepare(config_dir, tmp_path / "scratch", openai_up)
    with SidecarThread(config_dir, tmp_path / "ledger", namespace="default") as sc:
        probe = readiness(sc)
        assert probe.status_code == 503
        detail = probe.json()
        assert detail["ready"] is False and detail["configSerial"] is None
        assert detail["lastRejection"].startswith(reason)
        assert httpx.get(f"{sc.ops_url}/healthz", timeout=5).status_code == 200  # alive, just not ready

        for response in (chat(sc), httpx.get(f"{sc.base_url}/models", timeout=5)):
            assert response.status_code == 503
            error = response.json()["error"]
            assert error["code"] == "not_ready" and set(error) == {"message", "type", "param", "code"}
        assert openai_up.requests == []
        # The same refusal, seen on every poll, is counted once.
        assert metric_value(sc, "sluicegate_config_rejected_total", reason=reason) == 1

        render_dir(config_dir, resources(openai_up), namespace="default")
        wait_until(lambda: readiness(sc).status_code == 200)
        assert readiness(sc).json()["lastRejection"] is None
        response = chat(sc)
        assert response.status_code == 200, response.text
        assert len(openai_up.requests) == 1
        assert metric_value(sc, "sluicegate_config_rejected_total") == 1
