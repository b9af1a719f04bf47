"""The sidecar process is the data plane only: serving, it has loaded nothing of the offline reports, not
the price catalog library (prices arrive signed in the config), not ``cryptography`` (its verifier
child checks the config's signature and opens the provider keys), and httpx only for the offline mock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.fakes import FakeOpenAI
from tests.support.sidecar_harness import connection, free_ports, render_dir, tier

REPO = Path(__file__).resolve().parents[2]
SLUICEGATE = str(Path(sys.executable).with_name("sluicegate"))

# Runs ``sluicegate sidecar`` through the CLI's own entry point in this process; once it has answered a
# complete and a streamed chat completion (for ``model``), a watcher thread writes the loaded module names
# (not the ones kept out: ``None``) and stops the process with SIGTERM. The probe speaks HTTP with ``http.client`` (which the sidecar loads anyway):
# importing a client library of its own would load modules the sidecar does not.
PROBE = """
import http.client, json, os, signal, sys, threading, time
from sluicegate_cli.main import main

port, ops_port, out, model = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
args = sys.argv[5:]

def loaded():
    return sorted(m for m, module in sys.modules.items() if module is not None)

def request(port, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()

def watch():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if request(ops_port, "GET", "/readyz") == 200:
                break
        except OSError:
            pass
        time.sleep(0.05)
    started = loaded()
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    status = request(port, "POST", "/v1/chat/completions", json.dumps(body))
    streamed = request(port, "POST", "/v1/chat/completions", json.dumps({**body, "stream": True}))
    with open("/proc/self/maps") as maps:
        libraries = sorted({line.split()[-1] for line in maps if ".so" in line})
    with open(out, "w") as handle:
        seen = {"status": status, "streamed": streamed, "started": started, "modules": loaded()}
        json.dump({**seen, "libraries": libraries}, handle)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=watch, daemon=True).start()
sys.exit(main(["sidecar", "--port", str(port), "--ops-port", str(ops_port), *args]))
"""


def serve_one_request(tmp_path: Path) -> dict[str, Any]:
    """Run ``sluicegate sidecar`` on the examples (the offline mock), send one request (and one stream);
    the modules it had loaded."""
    config = tmp_path / "config"
    rendered = subprocess.run(
        [SLUICEGATE, "render", "-f", str(REPO / "examples"), "-o", str(config), "--offline"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr
    return serve(tmp_path, config, "auto")


def serve_through_a_real_connection(tmp_path: Path, fake: FakeOpenAI) -> dict[str, Any]:
    """The same through an OpenAI connection to a fake upstream on loopback: no mock connection."""
    config = render_dir(
        tmp_path / "config",
        [
            connection("openai", "openai", ["gpt-4o-mini"], base_url=fake.base_url, key="sk-upstream-1"),
            tier("standard", 10, [("openai", "gpt-4o-mini")]),
        ],
    )
    return serve(tmp_path, config, "gpt-4o-mini")


def serve(tmp_path: Path, config: Path, model: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
    env["SLUICEGATE_POD_NAMESPACE"] = "default"
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [
            sys.executable, "-c", PROBE, *map(str, free_ports(2)), str(out), model,
            "--config", str(config), "--ledger-dir", str(tmp_path / "ledger"),
            "--labels-file", str(tmp_path / "labels"), "--drain-seconds", "1", "--no-access-log",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )  # fmt: skip
    assert out.exists(), done.stderr
    return dict(json.loads(out.read_text()))


def test_the_serving_sidecar_process_loads_no_report_module_and_no_price_catalog(tmp_path: Path) -> None:
    seen = serve_one_request(tmp_path)
    assert seen["status"] == 200
    modules = seen["modules"]
    assert "sluicegate_sidecar.pipeline" in modules  # it did serve
    assert [m for m in modules if m.split(".")[0] in ("sluicegate_reports", "genai_prices")] == []


def test_the_serving_sidecar_process_never_loads_cryptography_its_verifier_child_does(tmp_path: Path) -> None:
    seen = serve_one_request(tmp_path)
    assert seen["status"] == 200  # the config verified (in the child) and a provider key opened
    for when in ("started", "modules"):  # once ready, and after serving a request
        loaded = seen[when]
        assert "sluicegate_sidecar.runtime" in loaded
        assert [m for m in loaded if m.split(".")[0] in ("cryptography", "_cffi_backend")] == []
        assert [
            m for m in loaded if m in ("sluicegate_contract.sealing", "sluicegate_contract.keyring")
        ] == []
        assert "sluicegate_sidecar.unsealing" not in loaded


def test_a_sidecar_without_a_budget_authority_loads_no_fleet_module_nor_library_code_it_never_runs(
    tmp_path: Path,
) -> None:
    seen = serve_one_request(tmp_path)
    assert seen["status"] == 200
    modules = seen["modules"]
    fleet = ("authorityclient", "leases", "leasejournal", "journalfile", "ledgership", "staticallowance")
    assert [m for m in modules if m.removeprefix("sluicegate_sidecar.") in fleet] == []
    unused = ("websockets", "wsproto", "python_multipart", "multipart", "click", "multiprocessing")
    assert [m for m in modules if m.split(".")[0] in unused] == []  # blocked, or never asked for
    # uvicorn's own command line and its reloader and worker supervisors: never run by the sidecar
    assert [m for m in modules if m.startswith(("uvicorn.main", "uvicorn.supervisors"))] == []
    assert "uvicorn.server" in modules


def test_the_serving_sidecar_process_maps_no_cpp_runtime_for_aiohttps_frozen_lists(tmp_path: Path) -> None:
    seen = serve_one_request(tmp_path)
    assert seen["status"] == 200
    assert "frozenlist" in seen["modules"] and "frozenlist._frozenlist" not in seen["modules"]
    assert [lib for lib in seen["libraries"] if "libstdc++" in lib] == []


HTTPX = ("httpx", "httpx_aiohttp", "httpcore", "h11", "certifi")


def test_a_sidecar_with_no_mock_connection_never_loads_httpx_it_serves_on_aiohttp_alone(
    tmp_path: Path,
) -> None:
    with FakeOpenAI(api_key="sk-upstream-1") as fake:
        seen = serve_through_a_real_connection(tmp_path, fake)
        assert [r.path for r in fake.requests] == ["/v1/chat/completions"] * 2  # both went upstream
        netloc = fake.base_url.split("/")[2]
        assert [(r.headers["host"], r.headers["accept-encoding"]) for r in fake.requests] == [
            (netloc, "identity")
        ] * 2  # as httpx sent them
    assert (seen["status"], seen["streamed"]) == (200, 200)
    for when in ("started", "modules"):  # once ready, and after a complete reply and a stream
        loaded = seen[when]
        assert "sluicegate_sidecar.upstream" in loaded and "aiohttp" in loaded
        assert [m for m in loaded if m.split(".")[0] in HTTPX] == []
        assert [m for m in loaded if m.startswith(("sluicegate_sidecar.mock", "importlib.metadata"))] == []
    assert "sluicegate_sidecar.relay" in seen["modules"]  # the stream was relayed


def test_a_mock_connection_still_serves_on_httpx_without_its_command_line_client(tmp_path: Path) -> None:
    seen = serve_one_request(tmp_path)
    assert (seen["status"], seen["streamed"]) == (200, 200)  # the offline mock answered both
    modules = seen["modules"]
    assert {"httpx", "sluicegate_sidecar.mockupstream", "sluicegate_sidecar.mock.transport"} <= set(modules)
    assert [m for m in modules if m.split(".")[0] in ("httpx_aiohttp", "rich", "pygments")] == []
    assert "httpx._main" not in modules  # kept out (``NOT_LOADED``), with the terminal libraries it loads
