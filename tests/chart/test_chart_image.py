"""docker/Dockerfile and .dockerignore agree with the chart and the package layout (no Docker needed)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.split(None, 1)[:1] == [name]]


def test_image_runs_as_the_numeric_non_root_user_the_chart_expects(render: Any) -> None:
    users = _instructions("USER")
    assert users == ["10001:10001"]
    pod = render().one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsGroup"] == 10001


def test_image_entrypoint_is_the_command_the_chart_and_webhook_run(render: Any) -> None:
    assert _instructions("ENTRYPOINT") == ['["sluicegate"]']
    assert render().one("Deployment")["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "sluicegate"
    ]


def test_base_image_and_pip_are_pinned() -> None:
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1))
    assert '"pip==' in DOCKERFILE
    assert "--constraint constraints.txt" in DOCKERFILE


def test_build_context_holds_every_source_root_the_wheel_packages() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, "the build context should be an allowlist"
    for root in {p.split("/")[0] for p in packages}:
        assert f"!{root}/" in ignore, f".dockerignore keeps {root}/ out of the build context"
        assert f"COPY {root}/ {root}/" in DOCKERFILE
    for needed in ("pyproject.toml", pyproject["project"]["readme"]):
        assert f"!{needed}" in ignore
