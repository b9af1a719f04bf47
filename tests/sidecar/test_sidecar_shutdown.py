"""Shutdown: detached work (ledger writes, upstream releases) finishes before the upstream clients and
the ledger are closed, including work spawned by other detached work while the sidecar closes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.sidecar.conftest import OPENAI_KEY
from tests.support.fakes import FakeOpenAI
from tests.support.sidecar_harness import SidecarThread, connection, render_dir, tier


def test_work_spawned_by_detached_work_while_the_sidecar_closes_still_finishes(
    tmp_path: Path, openai_up: FakeOpenAI
) -> None:
    config = render_dir(
        tmp_path / "cfg",
        [
            connection("openai", "openai", ["gpt-4o-mini"], base_url=openai_up.base_url, key=OPENAI_KEY),
            tier("standard", 10, [("openai", "gpt-4o-mini")]),
        ],
    )
    finished: list[str] = []
    sc = SidecarThread(config, tmp_path / "ledger").start()
    gateway = sc.gateway
    assert gateway is not None

    async def write() -> None:  # as a stream settled at shutdown spawns its ledger write
        await asyncio.sleep(0.2)
        finished.append("write")

    async def settle() -> None:
        await asyncio.sleep(0.2)
        gateway.spawn(write())

    async def detach() -> None:
        gateway.spawn(settle())

    sc.run_sync(detach())
    sc.stop()
    assert finished == ["write"]
