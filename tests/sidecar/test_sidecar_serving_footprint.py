"""The ``sluicegate sidecar`` process loads only what serving needs: its memory is paid once per Pod."""

from __future__ import annotations

import json
import subprocess
import sys

# Imports the sidecar command as ``sluicegate sidecar`` does (``--help``: it stops before serving) and
# prints the top-level packages it loaded (not the modules it keeps out: ``None`` in ``sys.modules``).
PROBE = """
import json, sys
from sluicegate_cli.main import main
try:
    main(["sidecar", "--help"])
except SystemExit:
    pass
print(json.dumps(sorted({name.split(".")[0] for name, module in sys.modules.items() if module is not None})))
"""


def test_the_sidecar_command_loads_neither_httpx_nor_its_command_line_client_and_terminal_libraries() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert {"sluicegate_sidecar", "aiohttp", "uvicorn"} <= loaded  # it did import the server
    assert loaded.isdisjoint({"httpx", "httpx_aiohttp", "rich", "pygments"})  # httpx: for a mock only


MODULES_PROBE = PROBE.replace('{name.split(".")[0] for', "{name for")


def test_the_sidecar_command_loads_the_offline_mock_upstream_only_for_a_mock_connection() -> None:
    done = subprocess.run(
        [sys.executable, "-c", MODULES_PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert "sluicegate_sidecar.upstream" in loaded  # it did import the serving path
    assert not {name for name in loaded if name.startswith("sluicegate_sidecar.mock.")}


# Four threads allocating at once, after ``one_malloc_arena`` (with "one") or not: how many malloc
# arenas of threads they added.
ARENAS_PROBE = """
import sys, threading
from sluicegate_sidecar.serve_cli import one_malloc_arena
from tests.support.fleet import thread_heaps
if sys.argv[1] == "one":
    assert one_malloc_arena({})
before = thread_heaps()
barrier, kept = threading.Barrier(4), []

def allocate():
    barrier.wait()
    kept.append([bytes(2000) for _ in range(1000)])  # above pymalloc's 512 bytes: malloc's

threads = [threading.Thread(target=allocate) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(thread_heaps() - before)
"""


def test_fleet_modes_worker_threads_share_the_one_malloc_arena() -> None:
    """glibc gives each allocating thread an arena of its own, whose touched pages stay resident;
    fleet mode limits the process to one (``serve_cli.one_malloc_arena``; tests/fleet checks a fleet
    sidecar process)."""
    added = {}
    for mode in ("one", "default"):
        done = subprocess.run(
            [sys.executable, "-c", ARENAS_PROBE, mode], capture_output=True, text=True, timeout=60, check=True
        )
        added[mode] = int(done.stdout.split()[-1])
    assert added["default"] >= 2  # the probe sees threads' arenas
    assert added["one"] == 0
