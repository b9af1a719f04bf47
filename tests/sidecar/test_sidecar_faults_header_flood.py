"""fault 32: oversized or never-finished request headers on the API or the ops port, and idle
connections held open, against the real ``sluicegate sidecar`` process: headers past the cap get 431
and a close, unfinished ones a close at the header deadline, the sidecar's memory stays bounded, and
a flood of ops connections under a small open-file limit cannot make API requests fail."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.sidecar_harness import free_ports

SLUICEGATE = str(Path(sys.executable).with_name("sluicegate"))
RESOURCES = """
apiVersion: sluicegate.io/v1alpha1
kind: ProviderConnection
metadata: {name: mock}
spec:
  provider: mock
  mock: {latencyMs: 0, seed: 7}
  models:
    - name: mock-small
      pricing: {inputPerMTok: 0.1, outputPerMTok: 0.4}
---
apiVersion: sluicegate.io/v1alpha1
kind: RoutingTier
metadata: {name: light}
spec:
  rank: 0
  candidates: [{connection: mock, model: mock-small}]
"""
HEADER_TIMEOUT = 1.0
MiB = 1024 * 1024


@dataclass
class Sidecar:
    process: subprocess.Popen[bytes]
    port: int
    ops_port: int

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def chat(self, client: httpx.Client) -> httpx.Response:
        body = {"model": "tier:light", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        return client.post(f"http://127.0.0.1:{self.port}/v1/chat/completions", json=body)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Sidecar]]:
    """``sluicegate render`` then ``sluicegate sidecar``, optionally under an open-file limit."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(*extra: str, open_files: int | None = None) -> Sidecar:
        (tmp_path / "resources.yaml").write_text(RESOURCES)
        config = tmp_path / "config"
        command = [SLUICEGATE, "render", "-f", str(tmp_path / "resources.yaml"), "-o", str(config)]
        rendered = subprocess.run(
            [*command, "--namespace", "default"], capture_output=True, text=True, timeout=60
        )
        assert rendered.returncode == 0, rendered.stderr
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
        env["SLUICEGATE_POD_NAMESPACE"] = "default"

        def limit_files() -> None:
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        port, ops_port = free_ports(2)
        command = [
            SLUICEGATE, "sidecar", "--config", str(config), "--ledger-dir", str(tmp_path / "ledger"),
            "--port", str(port), "--ops-port", str(ops_port), "--labels-file", str(tmp_path / "labels"),
            "--no-access-log", "--header-timeout", str(HEADER_TIMEOUT), *extra,
        ]  # fmt: skip
        with (tmp_path / "stderr.log").open("wb") as log:
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=log, env=env, preexec_fn=limit_files
            )
        processes.append(process)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{ops_port}/readyz", timeout=1).status_code == 200:
                    return Sidecar(process, port, ops_port)
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "stderr.log").read_text(errors="replace"))
            time.sleep(0.05)

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def answer_and_close(sock: socket.socket, within: float) -> bytes:
    """What the server sends until it closes the connection (AssertionError if it does not)."""
    sock.settimeout(within)
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"connection still open after {within} s; got {reply[:80]!r}") from None
    return reply


def test_giant_unfinished_headers_on_both_ports_get_431_and_a_close_and_memory_stays_bounded(
    launch: Callable[..., Sidecar],
) -> None:
    sidecar = launch("--header-timeout", "30")  # the cap acts here, not the deadline
    before = sidecar.rss_bytes()
    socks = [
        socket.create_connection(("127.0.0.1", p), timeout=5)
        for p in [sidecar.port] * 20 + [sidecar.ops_port] * 20
    ]
    chunk = b"a" * (64 * 1024)
    open_socks = list(socks)
    try:
        for sock in socks:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(2 * MiB // len(chunk)):  # 2 MiB of one header line each, never finished
            for sock in list(open_socks):
                try:
                    sock.sendall(chunk)
                except OSError:  # the sidecar closed it: refused
                    open_socks.remove(sock)
        time.sleep(1.0)  # what is in flight is read by the sidecar before its memory is measured
        grown = sidecar.rss_bytes() - before
        replies = [answer_and_close(sock, within=5) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert grown < 24 * MiB, f"RSS grew {grown / MiB:.0f} MiB"
    assert all(r == b"" or r.startswith(b"HTTP/1.1 431 ") for r in replies)
    assert sum(r.startswith(b"HTTP/1.1 431 ") for r in replies) >= 20
    with httpx.Client(timeout=5) as client:  # and both ports still serve
        assert sidecar.chat(client).status_code == 200
        assert client.get(f"http://127.0.0.1:{sidecar.ops_port}/healthz").status_code == 200


@pytest.mark.parametrize("port_of", ["api", "ops"])
def test_a_header_that_never_finishes_or_never_starts_is_closed_at_the_header_deadline(
    launch: Callable[..., Sidecar], port_of: str
) -> None:
    sidecar = launch()
    port = sidecar.port if port_of == "api" else sidecar.ops_port
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as partial,
        socket.create_connection(("127.0.0.1", port), timeout=5) as silent,
    ):
        started = time.monotonic()
        partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert answer_and_close(partial, within=HEADER_TIMEOUT + 3).startswith(b"HTTP/1.1 408 ")
        assert answer_and_close(silent, within=HEADER_TIMEOUT + 3) == b""
        assert HEADER_TIMEOUT - 0.1 <= time.monotonic() - started < HEADER_TIMEOUT + 3


def test_the_next_request_on_a_kept_alive_connection_gets_the_whole_header_deadline_from_its_own_start(
    launch: Callable[..., Sidecar],
) -> None:
    sidecar = launch()
    with socket.create_connection(("127.0.0.1", sidecar.ops_port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # answered; the connection stays open
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        time.sleep(HEADER_TIMEOUT * 0.6)
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # then nothing more
        # Not cut when a deadline counted from the first request would end, but a full one after this began.
        assert answer_and_close(sock, within=HEADER_TIMEOUT + 3).startswith(b"HTTP/1.1 408 ")
        assert HEADER_TIMEOUT - 0.1 <= time.monotonic() - started < HEADER_TIMEOUT + 3


def test_many_idle_ops_connections_cannot_make_api_requests_fail_under_a_small_open_file_limit(
    launch: Callable[..., Sidecar],
) -> None:
    sidecar = launch("--header-timeout", "60", open_files=256)
    idle: list[socket.socket] = []
    try:
        for _ in range(400):  # more than the sidecar's whole open-file limit, held open
            try:
                idle.append(socket.create_connection(("127.0.0.1", sidecar.ops_port), timeout=5))
            except OSError:
                break
        time.sleep(0.5)
        with httpx.Client(timeout=5) as client:
            statuses = [sidecar.chat(client).status_code for _ in range(20)]
            health = client.get(f"http://127.0.0.1:{sidecar.ops_port}/healthz").status_code
    finally:
        for sock in idle:
            sock.close()
    assert statuses == [200] * 20
    assert health == 200  # the oldest idle connection made room: probes are not locked out
    assert sidecar.process.poll() is None


def test_a_large_body_sent_in_one_write_with_its_headers_and_a_32_kib_header_are_served(
    launch: Callable[..., Sidecar],
) -> None:
    sidecar = launch()
    content = "word " * (60 * 1024)  # 300 KiB of body: it must not count against the header cap
    body = json.dumps(
        {"model": "tier:light", "messages": [{"role": "user", "content": content}], "max_tokens": 5}
    )
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Sluicegate-Tags: {json.dumps({'note': 'n' * 32 * 1024})}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=10) as sock:
        sock.sendall(head.encode() + body.encode())
        reply = answer_and_close(sock, within=10)
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
