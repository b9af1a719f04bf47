"""The newest config this sidecar accepted, kept on its own volume across restarts (fault 34).

``config-serial.json`` in the ledger directory (the sidecar's own writable volume, which outlives a
container restart) holds ``{"serial": N, "sha256": "<digest of config.json>"}``. After a restart a
config with a lower serial is refused as a rollback, and one with the same serial only when it is not
the very config accepted before (same serial, other content).

Written atomically: a temporary file, fsync, rename over the old one, fsync of the directory, so a
crash leaves the old record or the new one, never a torn one. A file that cannot be read or parsed
does not brick the sidecar: it is reported (``/readyz`` ``rollbackGuard``, an error in the log) and
treated as absent, so a validly signed config is served, and the next accepted config rewrites it.
Refusing every config instead would turn a damaged file into an outage that only deleting it fixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec

from sluicegate_contract.atomicfile import write_atomic

STATE_FILE = "config-serial.json"


class _Record(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    serial: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """A config accepted once: its serial and the SHA-256 of its ``config.json``."""

    serial: int
    sha256: str


def read_accepted(directory: Path) -> tuple[Accepted | None, str | None]:
    """The record in ``directory`` (None when there is none yet) and what is wrong with it, if anything."""
    path = directory / STATE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    try:
        record = msgspec.json.decode(raw, type=_Record)
    except msgspec.DecodeError as exc:
        return None, f"{path} is not a serial record ({exc})"
    if record.serial < 0:
        return None, f"{path} holds a negative serial"
    return Accepted(record.serial, record.sha256), None


def write_accepted(directory: Path, accepted: Accepted) -> None:
    """Replace the record atomically and durably; raises ``OSError`` when the volume cannot be written."""
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / STATE_FILE, msgspec.json.encode(_Record(accepted.serial, accepted.sha256)))
