"""The ``sluicegate sidecar`` process loads only what serving needs: its memory is paid once per Pod."""

from __future__ import annotations

import json
import subprocess
import sys

# Imports the sidecar command as ``sluicegate sidecar`` does (``--help``: it stops before serving) and
# prints the top-level packages it loaded.
PROBE = """
import json, sys
from sluicegate_cli.main import main
try:
    main(["sidecar", "--help"])
except SystemExit:
    pass
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_the_sidecar_command_does_not_load_httpx_command_line_client_or_its_terminal_libraries() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert {"sluicegate_sidecar", "httpx", "uvicorn"} <= loaded  # it did import the server
    assert loaded.isdisjoint({"rich", "pygments"})


MODULES_PROBE = PROBE.replace('name.split(".")[0] for name in sys.modules', "name for name in sys.modules")


def test_the_sidecar_command_loads_the_offline_mock_upstream_only_for_a_mock_connection() -> None:
    done = subprocess.run(
        [sys.executable, "-c", MODULES_PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert "sluicegate_sidecar.upstream" in loaded  # it did import the serving path
    assert not {name for name in loaded if name.startswith("sluicegate_sidecar.mock.")}
