"""Processes of a fleet on loopback: budget authorities and sidecars, each a real ``sluicegate`` process.

Stopped by PID only (SIGTERM to drain, SIGKILL to crash), never by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.sidecar_harness import free_port, free_ports


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up:\n{log.read_text()[-3000:]}")


@dataclass
class Proc:
    argv: list[str]
    env: dict[str, str]
    log: Path
    health_url: str
    url: str = ""
    process: subprocess.Popen[bytes] | None = None
    restarts: int = field(default=0)

    def start(self) -> Proc:
        return self.launch().ready()

    def launch(self) -> Proc:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        return self

    def ready(self) -> Proc:
        assert self.process is not None
        _wait_http(self.health_url, self.process, self.log)
        return self

    def kill(self) -> None:
        """``kill -9`` by PID: no drain, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def signal_stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)

    def terminate(self, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.signal_stop()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def authority(
    config_dirs: list[Path], database_url: str, log: Path, *, ttl: float = 10.0, host: str = "127.0.0.1"
) -> Proc:
    port = free_port()
    argv = [sys.executable, "-m", "sluicegate_cli", "authority", "--listen", f"{host}:{port}"]
    for directory in config_dirs:
        argv += ["--config", str(directory)]
    argv += ["--lease-ttl-seconds", str(ttl), "--poll-seconds", "0.5"]
    if host not in ("127.0.0.1", "::1", "localhost"):  # a test network (a veth pair): plain HTTP on purpose
        argv.append("--insecure-listen")
    env = _env({"SLUICEGATE_DATABASE_URL": database_url})
    return Proc(argv, env, log, f"http://{host}:{port}/healthz", f"http://{host}:{port}")


def sidecar(
    config_dir: Path,
    ledger_dir: Path,
    log: Path,
    authority_urls: list[str],
    *extra: str,
    prefix: tuple[str, ...] = (),
) -> Proc:
    """``prefix``: a command to run it under (``ip netns exec NS``: its loopback is then the namespace's)."""
    api, ops = free_ports(2)
    argv = [
        *prefix,
        sys.executable,
        "-m",
        "sluicegate_cli",
        "sidecar",
        "--config",
        str(config_dir),
        "--ledger-dir",
        str(ledger_dir),
        "--port",
        str(api),
        "--ops-port",
        str(ops),
        "--no-access-log",
        *extra,
    ]
    for url in authority_urls:
        argv += ["--budget-authority", url]
    return Proc(argv, _env({}), log, f"http://127.0.0.1:{ops}/readyz", f"http://127.0.0.1:{api}")


def start_all(procs: list[Proc]) -> list[Proc]:
    """Launch together, then wait until each answers (starts overlap: 2 shared cores)."""
    for proc in procs:
        proc.launch()
    return [proc.ready() for proc in procs]


def stop_all(procs: list[Proc]) -> None:
    """SIGTERM to all, then wait for each (drains overlap)."""
    for proc in procs:
        proc.signal_stop()
    for proc in procs:
        proc.terminate()


THREAD_HEAP = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit: a thread's malloc arena, mapped at this alignment


def thread_heaps(pid: int | str = "self") -> int:
    """How many glibc malloc arenas of threads (not the main arena: that is the ``[heap]``) a process
    has mapped: anonymous read-write mappings at a ``THREAD_HEAP`` boundary."""
    found = 0
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) == 5 and fields[1] == "rw-p" and int(fields[0].split("-")[0], 16) % THREAD_HEAP == 0:
            found += 1
    return found
