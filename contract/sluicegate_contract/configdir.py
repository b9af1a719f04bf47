"""The sealed-config directory layout, as a Secret volume presents it and as ``render`` writes it.

``DIR/..data`` is a symlink to a timestamped folder holding ``config.json`` and ``config.sig``;
``DIR/config.json`` and ``DIR/config.sig`` link through it. Swapping ``..data`` replaces both at once.
The one module of the contract that touches files.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CONFIG_FILE = "config.json"
SIG_FILE = "config.sig"
DATA_LINK = "..data"
KEYS_DIR = "keys"
SIGNING_RING_FILE = "signing-keys.json"
DATA_RING_FILE = "data-keys.json"
PUBLIC_KEYS_FILE = "signing-public.json"


def read_sealed(directory: Path) -> tuple[bytes, bytes]:
    """Both files from one consistent generation (through ``..data`` when present).

    Raises ``FileNotFoundError`` when either is missing.
    """
    data = directory / DATA_LINK
    base = data.resolve(strict=True) if data.exists() else directory
    return (base / CONFIG_FILE).read_bytes(), (base / SIG_FILE).read_bytes()


def write_sealed(directory: Path, body: bytes, signature: bytes) -> None:
    """Write a new generation and swap it in atomically, the way the kubelet updates Secret volumes."""
    directory.mkdir(parents=True, exist_ok=True)
    generation = Path(tempfile.mkdtemp(prefix="..gen_", dir=directory))
    os.chmod(generation, 0o755)  # noqa: S103 - read by the sidecar's user, like a Secret volume
    (generation / CONFIG_FILE).write_bytes(body)
    (generation / SIG_FILE).write_bytes(signature)
    for name in (CONFIG_FILE, SIG_FILE):
        os.chmod(generation / name, 0o644)
    old = directory / DATA_LINK
    previous = old.resolve() if old.is_symlink() else None
    tmp_link = directory / "..data_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    tmp_link.symlink_to(generation.name)
    os.replace(tmp_link, old)
    for name in (CONFIG_FILE, SIG_FILE):
        link = directory / name
        if not link.is_symlink():
            if link.exists():
                link.unlink()
            link.symlink_to(f"{DATA_LINK}/{name}")
    if (
        previous is not None
        and previous != generation
        and previous.parent == directory.resolve()
        and previous.is_dir()  # a dangling ..data (generation already gone) leaves nothing to remove
    ):
        for child in previous.iterdir():
            child.unlink()
        previous.rmdir()


def write_private(path: Path, data: bytes) -> None:
    """Write key material readable by the owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
