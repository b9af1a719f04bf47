"""A listener port already taken: the sidecar does not start, says which address, and leaves nothing
open: never the API serving while the ops server's uvicorn exits the process from inside the loop."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sluicegate_sidecar.servers import ListenError
from tests.support.sidecar_harness import SidecarThread, connection, free_ports, render_dir, tier

SLUICEGATE = str(Path(sys.executable).with_name("sluicegate"))


def mock_config(directory: Path) -> Path:
    return render_dir(
        directory,
        [connection("mock", "mock", ["mock-small"], key=None), tier("light", 0, [("mock", "mock-small")])],
    )


def held(host: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((host, port))
    sock.listen()
    return sock


def test_an_ops_port_taken_stops_the_start_with_an_error_naming_it_and_frees_the_api_port(
    tmp_path: Path,
) -> None:
    sidecar = SidecarThread(mock_config(tmp_path / "config"), tmp_path / "ledger")
    taken = f"cannot listen on 0.0.0.0:{sidecar.ops_port}"
    with held("0.0.0.0", sidecar.ops_port), pytest.raises(ListenError, match=taken):
        sidecar._start_once()
    gc.collect()  # a socket left open would warn here (an error in this suite)
    with held("127.0.0.1", sidecar.port):  # the API's port was closed, not left listening
        pass


def test_the_sidecar_process_exits_1_when_its_api_port_is_taken(tmp_path: Path) -> None:
    config = mock_config(tmp_path / "config")
    port, ops_port = free_ports(2)
    with held("127.0.0.1", port):
        command = [
            SLUICEGATE, "sidecar", "--config", str(config), "--ledger-dir", str(tmp_path / "ledger"),
            "--port", str(port), "--ops-port", str(ops_port), "--labels-file", str(tmp_path / "labels"),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
