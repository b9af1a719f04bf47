"""The ``sluicegate`` entry point's process set-up: a package imported bare (``BARE_PACKAGES``) has the
names it exports and none of its ``__init__``'s imports, until another name of it is used."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from sluicegate_cli.main import bare_package
bare_package("uvicorn", ("uvicorn.config:Config", "uvicorn.server:Server"))
import uvicorn
import uvicorn.config
import uvicorn.server
assert uvicorn.Config is uvicorn.config.Config and uvicorn.Server is uvicorn.server.Server
assert "uvicorn.main" not in sys.modules and "click" not in sys.modules
import uvicorn.lifespan.off  # a submodule importing from the package itself
version = uvicorn.__version__  # a name the real __init__ defines: it runs now
assert "uvicorn.main" in sys.modules and "click" in sys.modules
assert callable(uvicorn.run) and uvicorn.Config is uvicorn.config.Config
try:
    uvicorn.no_such_name
except AttributeError:
    print("ok", version)
"""


def test_a_bare_package_exports_its_names_without_its_init_and_runs_the_init_on_first_use_of_another_name() -> (
    None
):
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok 0.")
