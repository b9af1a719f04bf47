"""Reading the spend ledger's files: which files, in chain order, and their entries.

Pure file reading; the writer is ``ledger.Ledger``. In fleet mode the sidecar deletes closed files
whose every entry the database acknowledged (``ledgership.prune``), oldest first, and records what it
deleted in ``ledger-pruned.json`` (``Pruned``) first, so ``ledger verify`` checks the rest of the
chain from there instead of calling the missing prefix a truncation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

from .ledger import Entry, decode_entry, parse_time

_NAME = re.compile(r"^ledger-(\d{6,})\.jsonl$")
PRUNED_FILE = "ledger-pruned.json"


class Pruned(msgspec.Struct, frozen=True, kw_only=True):
    """The prefix of the chain deleted from the volume once the database had acknowledged it."""

    stream: str  # the fleet ledger stream (sidecar id) whose rows hold it
    seq: int  # the last entry deleted
    hash: str  # its hash: the first kept entry's ``prevHash``
    file: int  # the index of the last file deleted


def read_pruned(directory: Path) -> Pruned | None:
    """The pruning record in ``directory``; None when nothing was pruned (or it cannot be read)."""
    try:
        return msgspec.json.decode((directory / PRUNED_FILE).read_bytes(), type=Pruned)
    except (OSError, msgspec.DecodeError):
        return None


class LedgerError(Exception):
    """The ledger cannot record (disk full, read-only, corrupt tail): refuse new paid requests."""


def file_name(index: int) -> str:
    return f"ledger-{index:06d}.jsonl"


def file_index(path: Path) -> int | None:
    match = _NAME.match(path.name)
    return int(match.group(1)) if match else None


def ledger_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files to read, in chain order: a directory stands for its ``ledger-NNNNNN.jsonl`` files."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = [p for p in path.iterdir() if file_index(p) is not None]
            files.extend(sorted(found, key=lambda p: file_index(p) or 0))
        else:
            files.append(path)
    return files


def read_entries(paths: Iterable[str | Path], since: datetime | None = None) -> Iterator[Entry]:
    """Entries in chain order, skipping a torn last line. Files that end an hour before ``since``
    are skipped. A line that is not an entry raises ``LedgerError`` naming it."""
    for path in ledger_files(paths):
        if since is not None and _ends_before(path, since - timedelta(hours=1)):
            continue
        for number, line in enumerate(path.read_bytes().split(b"\n")[:-1], 1):  # [-1]: torn or empty
            try:
                yield decode_entry(line)
            except msgspec.DecodeError as exc:
                raise LedgerError(f"{path}:{number}: not a ledger entry ({exc})") from exc


def _ends_before(path: Path, instant: datetime) -> bool:
    _, last = tail(path)
    try:
        return last is not None and parse_time(decode_entry(last).time) < instant
    except (msgspec.DecodeError, ValueError):
        return False  # read it in full: the bad line is reported where it is


def tail(path: Path) -> tuple[int, bytes | None]:
    """(length up to the last newline, last complete line), read from the end of the file.

    What follows the last newline is a torn write (or NUL padding after a crash): never acknowledged.
    """
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        chunk = 4096
        while True:
            start = max(0, size - chunk)
            handle.seek(start)
            data = handle.read(size - start)
            end = data.rfind(b"\n")
            if end < 0 and start == 0:
                return 0, None
            if end >= 0 and (start == 0 or data.rfind(b"\n", 0, end) >= 0):
                return start + end + 1, data[data.rfind(b"\n", 0, end) + 1 : end]
            chunk *= 4
