"""An idle sidecar sleeps: every Pod of every app has one, most of them idle most of the time."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from sluicegate_sidecar import servers
from tests.support.sidecar_harness import SidecarThread, connection, render_dir, tier


def mock_config(directory: Path) -> Path:
    return render_dir(
        directory,
        [connection("mock", "mock", ["mock-small"], key=None), tier("light", 0, [("mock", "mock-small")])],
    )


def test_the_servers_wake_about_once_a_second_and_keep_the_date_header_current(tmp_path, monkeypatch) -> None:
    """uvicorn's own main loop wakes every 0.1 s (twenty wake-ups a second for the two servers); the
    sidecar's wakes once a second, which is also how often the ``Date`` header is refreshed."""
    ticks: dict[int, list[float]] = {}  # by server: other tests' sidecars may still be serving
    tick = servers._QuietServer.on_tick

    async def counted(self: servers._QuietServer, counter: int) -> bool:
        ticks.setdefault(id(self), []).append(time.monotonic())
        return await tick(self, counter)

    monkeypatch.setattr(servers._QuietServer, "on_tick", counted)
    sidecar = SidecarThread(mock_config(tmp_path / "config"), tmp_path / "ledger").start()
    try:
        time.sleep(0.5)
        start = time.monotonic()
        time.sleep(3.0)
        woken = sorted(sum(1 for at in seen if at >= start) for seen in ticks.values())
        assert woken and woken[-1] >= 2  # a server of this sidecar woke in those 3 s
        assert woken[-1] <= 5  # about once a second each (uvicorn's own loop: 30 times in 3 s)
        date = httpx.get(f"{sidecar.root_url}/v1/models", timeout=5).headers["date"]
        assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 3.0
    finally:
        sidecar.stop()
