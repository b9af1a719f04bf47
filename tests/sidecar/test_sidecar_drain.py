"""SIGTERM drain of the real ``sluicegate sidecar`` process (fault 21): readiness turns false, new
requests get 503 with Retry-After, the stream in flight completes, the ledger is flushed and
verifies, and the process exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fakes import FakeOpenAI, Fault
from tests.support.sidecar_harness import free_ports, ledger_lines, wait_for

SLUICEGATE = str(Path(sys.executable).with_name("sluicegate"))
RESOURCES = """
apiVersion: sluicegate.io/v1alpha1
kind: ProviderConnection
metadata: {name: mock}
spec:
  provider: mock
  mock: {latencyMs: 0, streamChunkDelayMs: 40, seed: 7}
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
---
apiVersion: sluicegate.io/v1alpha1
kind: BudgetPolicy
metadata: {name: daily}
spec:
  limits: [{window: day, amountUSD: 5}]
"""


SILENT_UPSTREAM = """
apiVersion: v1
kind: Secret
metadata: {name: openai-key}
stringData: {apiKey: sk-test}
---
apiVersion: sluicegate.io/v1alpha1
kind: ProviderConnection
metadata: {name: openai}
spec:
  provider: openai-compatible
  baseURL: BASE_URL
  apiKeySecretRef: {name: openai-key, key: apiKey}
  timeouts: {idleSeconds: 60, totalSeconds: 120}
  models:
    - name: gpt-4o-mini
      pricing: {inputPerMTok: 0.15, outputPerMTok: 0.6}
---
apiVersion: sluicegate.io/v1alpha1
kind: RoutingTier
metadata: {name: standard}
spec:
  rank: 10
  candidates: [{connection: openai, model: gpt-4o-mini}]
"""


class Sidecar:
    def __init__(self, process: subprocess.Popen[bytes], port: int, ops_port: int, ledger: Path) -> None:
        self.process = process
        self.api = f"http://127.0.0.1:{port}/v1"
        self.ops = f"http://127.0.0.1:{ops_port}"
        self.ledger = ledger

    def ready(self) -> httpx.Response | None:
        try:
            return httpx.get(f"{self.ops}/readyz", timeout=1)
        except httpx.HTTPError:
            return None


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Sidecar]]:
    """The real CLI: ``sluicegate render`` on YAML, then ``sluicegate sidecar`` on the result."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(resources: str = RESOURCES, drain_seconds: float = 20.0) -> Sidecar:
        (tmp_path / "resources.yaml").write_text(resources)
        config = tmp_path / "config"
        rendered = subprocess.run(
            [
                SLUICEGATE,
                "render",
                "-f",
                str(tmp_path / "resources.yaml"),
                "-o",
                str(config),
                "--namespace",
                "default",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rendered.returncode == 0, rendered.stderr
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
        env["SLUICEGATE_POD_NAMESPACE"] = "default"
        for _ in range(3):  # a port picked free can be taken before the sidecar binds it: try others
            (port, ops_port), ledger = free_ports(2), tmp_path / "ledger"
            command = [
                SLUICEGATE, "sidecar", "--config", str(config), "--ledger-dir", str(ledger),
                "--port", str(port), "--ops-port", str(ops_port), "--labels-file", str(tmp_path / "labels"),
                "--drain-seconds", str(drain_seconds), "--no-access-log",
            ]  # fmt: skip
            with (tmp_path / "stderr.log").open("wb") as log:
                process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
            processes.append(process)
            sc = Sidecar(process, port, ops_port, ledger)
            deadline = time.monotonic() + 30
            while (r := sc.ready()) is None or r.status_code != 200:
                log_text = (tmp_path / "stderr.log").read_text(errors="replace")
                if process.poll() is not None and "address already in use" in log_text.lower():
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"sidecar not ready (exit {process.poll()}):\n{log_text}")
                time.sleep(0.05)
            else:
                return sc
        raise AssertionError("no free ports for the sidecar")

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def read_stream_through_sigterm(sidecar: Sidecar, model: str) -> list[str]:
    """Stream a chat reply, send SIGTERM once its first event is in, return every data event."""
    body = {"model": model, "messages": [{"role": "user", "content": "tell me"}], "stream": True}
    client = httpx.Client(timeout=20)
    with client, client.stream("POST", f"{sidecar.api}/chat/completions", json=body) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        sidecar.process.send_signal(signal.SIGTERM)
        return [first, *(line for line in lines if line.startswith("data: "))]


def assert_ledger_verifies(sidecar: Sidecar) -> list[dict[str, object]]:
    verify = subprocess.run(
        [SLUICEGATE, "ledger", "verify", str(sidecar.ledger)], capture_output=True, text=True, timeout=30
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return ledger_lines(sidecar.ledger)


def test_sigterm_drains_the_stream_in_flight_refuses_new_requests_and_exits_cleanly(launch) -> None:
    sidecar = launch()
    body = {"model": "tier:light", "messages": [{"role": "user", "content": "tell me"}], "stream": True}
    client = httpx.Client(timeout=20)
    with client, client.stream("POST", f"{sidecar.api}/chat/completions", json=body) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))

        sidecar.process.send_signal(signal.SIGTERM)
        not_ready = wait_for(
            lambda: (r := sidecar.ready()) is not None and r.status_code == 503 and r, timeout=5
        )
        assert not_ready.json()["draining"] is True
        refused = httpx.post(f"{sidecar.api}/chat/completions", json=body | {"stream": False}, timeout=5)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "draining"
        assert int(refused.headers["retry-after"]) > 0

        rest = [line for line in lines if line.startswith("data: ")]
    assert sidecar.process.wait(timeout=15) == 0
    events = [first, *rest]
    assert events[-1] == "data: [DONE]" and len(events) > 10  # the whole answer, not cut short
    assert not any('"error"' in event for event in events)

    [entry] = assert_ledger_verifies(sidecar)  # the stream; the refused request never reached a provider
    assert entry["status"] == 200 and entry["costMicroUSD"] > 0


def test_a_stream_still_open_at_the_drain_deadline_ends_with_an_error_event_and_is_charged(launch) -> None:
    sidecar = launch(drain_seconds=0.5)  # the mock's answer takes about 2.5 s
    events = read_stream_through_sigterm(sidecar, "tier:light")
    assert sidecar.process.wait(timeout=15) == 0
    assert "[DONE]" not in events[-1]
    assert json.loads(events[-1].removeprefix("data: "))["error"]["code"] == "sidecar_shutdown"
    [entry] = assert_ledger_verifies(sidecar)
    assert entry["status"] == "sidecar_shutdown" and entry["costMicroUSD"] > 0


def test_a_stream_waiting_on_a_silent_upstream_is_cut_at_the_drain_deadline_not_its_idle_timeout(
    launch,
) -> None:
    with FakeOpenAI() as fake:
        fake.script([Fault.stream_hang(after=3, seconds=30)])
        resources = SILENT_UPSTREAM.replace("BASE_URL", fake.base_url)
        sidecar = launch(resources, drain_seconds=0.5)
        started = time.monotonic()
        events = read_stream_through_sigterm(sidecar, "tier:standard")
        assert sidecar.process.wait(timeout=15) == 0
        assert time.monotonic() - started < 10  # not the 60 s idle timeout, nor the 30 s silence
    assert json.loads(events[-1].removeprefix("data: "))["error"]["code"] == "sidecar_shutdown"
    [entry] = assert_ledger_verifies(sidecar)
    assert entry["status"] == "sidecar_shutdown" and entry["costBasis"] == "estimated"
