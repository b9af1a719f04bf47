"""fault 14: the config directory caught mid-update (``..data`` pointing at a generation already
removed, or a generation without config.json) keeps the served config, does not flap readiness and
is not counted as a refused config; the next good generation is picked up."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sluicegate_contract.configdir import CONFIG_FILE, DATA_LINK, KEYS_DIR, read_sealed, write_sealed
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

POLL = 0.2  # the watcher's poll interval here: a short disruption spans at most two polls


def resources(openai_up: FakeOpenAI, *, with_later: bool = False) -> list[Any]:
    objects: list[Any] = [
        connection("openai", "openai", ["gpt-4o-mini"], base_url=openai_up.base_url, key=OPENAI_KEY),
        tier("standard", 10, [("openai", "gpt-4o-mini")]),
    ]
    if with_later:
        objects.append(tier("later", 20, [("openai", "gpt-4o-mini")]))
    return objects


def chat(sidecar: SidecarThread, model: str = "tier:standard") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{sidecar.base_url}/chat/completions", json=body, timeout=10)


def readiness(sidecar: SidecarThread) -> httpx.Response:
    return httpx.get(f"{sidecar.ops_url}/readyz", timeout=5)


def point_data_at(config_dir: Path, target: str) -> None:
    """Swap ``..data`` atomically, as the kubelet does (the target need not exist)."""
    tmp = config_dir / "..data_swap"
    tmp.symlink_to(target)
    os.replace(tmp, config_dir / DATA_LINK)


@contextmanager
def data_on_a_removed_generation(config_dir: Path) -> Iterator[None]:
    generation = os.readlink(config_dir / DATA_LINK)
    point_data_at(config_dir, "..gen_already_removed")
    try:
        yield
    finally:
        point_data_at(config_dir, generation)


@contextmanager
def generation_without_config_json(config_dir: Path) -> Iterator[None]:
    config_json = (config_dir / DATA_LINK).resolve() / CONFIG_FILE
    aside = config_dir.parent / "config.json.aside"
    shutil.move(config_json, aside)
    try:
        yield
    finally:
        shutil.move(aside, config_json)


def forced_reload(sidecar: SidecarThread) -> bool:
    """One config read now, on the sidecar's loop (besides the watcher's own polls)."""

    async def load() -> bool:
        assert sidecar.gateway is not None
        return sidecar.gateway.try_load()

    return bool(sidecar.run_sync(load()))


def forge_next_generation(config_dir: Path, scratch: Path, objects: list[Any], serial: int) -> None:
    """A config with the trusted key id but a signature that does not verify (refused: bad_signature)."""
    shutil.copytree(config_dir / KEYS_DIR, scratch / KEYS_DIR)
    render_dir(scratch, objects, serial=serial)
    body, _ = read_sealed(scratch)
    write_sealed(config_dir, body, base64.b64encode(Ed25519PrivateKey.generate().sign(body)))


@pytest.mark.parametrize(
    "disruption",
    [data_on_a_removed_generation, generation_without_config_json],
    ids=["data-link-dangling", "config-json-missing"],
)
def test_a_config_read_mid_swap_keeps_serving_and_is_not_counted_as_a_refusal(
    tmp_path: Path, openai_up: FakeOpenAI, disruption: Callable[[Path], AbstractContextManager[None]]
) -> None:
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up))
    with SidecarThread(config_dir, tmp_path / "ledger", poll_interval=POLL) as sc:
        assert chat(sc).status_code == 200
        with disruption(config_dir):
            for _ in range(2):
                assert forced_reload(sc) is False
                probe = readiness(sc)
                assert probe.status_code == 200 and probe.json()["lastRejection"] is None
                assert chat(sc).status_code == 200
        assert metric_value(sc, "sluicegate_config_rejected_total") == 0
        assert metric_value(sc, "sluicegate_config_serial") == 1

        render_dir(config_dir, resources(openai_up, with_later=True))
        wait_until(lambda: metric_value(sc, "sluicegate_config_serial") == 2)
        assert chat(sc, "tier:later").status_code == 200
        assert metric_value(sc, "sluicegate_config_rejected_total") == 0


def test_a_refused_config_caught_mid_swap_is_counted_once_not_again_as_a_new_one(
    tmp_path: Path, openai_up: FakeOpenAI
) -> None:
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up))
    with SidecarThread(config_dir, tmp_path / "ledger", poll_interval=POLL) as sc:
        forge_next_generation(config_dir, tmp_path / "scratch", resources(openai_up, with_later=True), 2)
        wait_until(lambda: metric_value(sc, "sluicegate_config_rejected_total", reason="bad_signature") == 1)

        with data_on_a_removed_generation(config_dir):
            assert forced_reload(sc) is False
        assert forced_reload(sc) is False  # the same forged generation, read again
        with generation_without_config_json(config_dir):
            assert forced_reload(sc) is False
        assert forced_reload(sc) is False

        assert metric_value(sc, "sluicegate_config_rejected_total") == 1
        detail = readiness(sc).json()
        assert detail["ready"] is True and detail["lastRejection"].startswith("bad_signature")
        assert chat(sc).status_code == 200 and chat(sc, "tier:later").status_code == 404

        render_dir(config_dir, resources(openai_up, with_later=True), serial=3)
        wait_until(lambda: metric_value(sc, "sluicegate_config_serial") == 3)
        assert chat(sc, "tier:later").status_code == 200
        assert readiness(sc).json()["lastRejection"] is None


def test_a_config_that_stays_missing_is_reported_once_and_cleared_when_it_returns(
    tmp_path: Path, openai_up: FakeOpenAI
) -> None:
    config_dir = render_dir(tmp_path / "cfg", resources(openai_up))
    with SidecarThread(config_dir, tmp_path / "ledger", poll_interval=0.05) as sc:
        with data_on_a_removed_generation(config_dir):
            wait_until(lambda: metric_value(sc, "sluicegate_config_rejected_total", reason="missing") == 1)
            probe = readiness(sc)
            assert probe.status_code == 200  # still serving the last good config
            assert probe.json()["lastRejection"].startswith("missing")
            assert chat(sc).status_code == 200
        wait_until(lambda: readiness(sc).json()["lastRejection"] is None)
        assert metric_value(sc, "sluicegate_config_rejected_total") == 1
        assert metric_value(sc, "sluicegate_config_serial") == 1
