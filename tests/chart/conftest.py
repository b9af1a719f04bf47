"""Fixtures for the chart tests: a real helm binary (fetched once by scripts/fetch-helm.py) and rendering.

helm runs with HOME, caches and config in a temp dir, offline: no test here touches the network once
helm is in .tools/bin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "sluicegate"
BIN_DIR = REPO / ".tools" / "bin"
NAMESPACE = "sluicegate-system"


@dataclass(frozen=True)
class Helm:
    binary: Path
    env: dict[str, str]

    def run(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.binary), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def template(self, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Render the chart (CRDs included) and return the parsed objects, empty documents dropped."""
        args = [
            "template",
            "sluicegate",
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--include-crds",
            "--values",
            "-",
        ]
        done = self.run(*args, stdin=json.dumps(values or {}))
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helm]:
    binary = BIN_DIR / "helm"
    fetch = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fetch-helm.py"), "--bin-dir", str(BIN_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if fetch.returncode != 0 or not binary.is_file():
        pytest.fail(f"scripts/fetch-helm.py could not provide helm:\n{fetch.stdout}\n{fetch.stderr}")
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }
    yield Helm(binary=binary, env=env)


@dataclass(frozen=True)
class Manifest:
    """The objects one `helm template` produced."""

    objects: tuple[dict[str, Any], ...]

    def find(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        return [
            o for o in self.objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
        ]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = self.find(kind, name)
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]


@pytest.fixture(scope="session")
def render(helm: Helm) -> Callable[..., Manifest]:
    """render(values) -> Manifest; identical value sets render once per session."""
    cache: dict[str, Manifest] = {}

    def rendered(values: dict[str, Any] | None = None) -> Manifest:
        key = json.dumps(values or {}, sort_keys=True)
        if key not in cache:
            cache[key] = Manifest(tuple(helm.template(values)))
        return cache[key]

    return rendered


from tests.support.postgres import database_url, postgres_server  # noqa: E402  (the fleet ledger's CronJob)

__all__ = ["database_url", "postgres_server"]
