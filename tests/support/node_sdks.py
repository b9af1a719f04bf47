"""The Node SDKs (the openai npm package, the Vercel AI SDK) for the tests that drive the sidecar with
them: pinned in ``tests/support/node/package.json`` and its ``package-lock.json``, installed by
``npm ci`` into ``.tools/node-sdks`` (ignored; reused while the lock file is unchanged: ~15 s once,
then nothing), with the scripts in ``tests/support/node/*.mjs`` copied beside them.

Tests skip only when ``node`` (or ``npm``) is not installed; a failed install is a test error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "support" / "node"
INSTALLED = ROOT / ".tools" / "node-sdks"
LOCK = "package-lock.json"
INSTALL_TIMEOUT = 300
RUN_TIMEOUT = 60


def install() -> Path:
    """The directory holding the pinned packages and the scripts, installed when missing or stale."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node SDK tests skipped: node and npm are not installed")
    wanted = (SOURCE / LOCK).read_bytes()
    stamp = INSTALLED / ".installed-lock.json"
    if not (stamp.exists() and stamp.read_bytes() == wanted and (INSTALLED / "node_modules").is_dir()):
        if INSTALLED.exists():
            shutil.rmtree(INSTALLED)
        INSTALLED.mkdir(parents=True)
        for name in ("package.json", LOCK):
            shutil.copyfile(SOURCE / name, INSTALLED / name)
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--silent", "--ignore-scripts"],
            cwd=INSTALLED, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"npm ci in {INSTALLED} failed: {done.stderr.strip()[-500:]}")
        stamp.write_bytes(wanted)
    for script in SOURCE.glob("*.mjs"):
        shutil.copyfile(script, INSTALLED / script.name)
    return INSTALLED


def run_script(directory: Path, script: str, scenario: str, **env: str) -> dict[str, Any]:
    """Run ``script scenario`` with node and ``env`` (SIDECAR_URL, MODEL, ...); its one JSON line."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    environment |= {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", **env}
    done = subprocess.run(
        ["node", str(directory / script), scenario],
        cwd=directory, env=environment, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    shown = f"node {script} {scenario} exited {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, shown
    lines = done.stdout.strip().splitlines()
    assert lines, shown
    result: dict[str, Any] = json.loads(lines[-1])
    return result
