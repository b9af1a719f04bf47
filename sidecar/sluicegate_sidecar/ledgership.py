"""Fleet mode: which local ledger lines the budget authority has not acknowledged yet.

The local JSONL stays the write-ahead log; this reads it forward from the acknowledged watermark
(``LEDGER_DIR/ledger-acked.json``, replaced atomically) and hands ``authorityclient`` the next
lines to ship with a lease sync. When the authority acknowledges a seq (every entry up to it is in
PostgreSQL), the watermark moves; after a restart on the same volume, shipping resumes from it.
Lines are shipped byte for byte, so their hash chain stays checkable in the database.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec

from sluicegate_contract.atomicfile import write_atomic
from sluicegate_contract.ledgerfiles import file_index, ledger_files

log = logging.getLogger("sluicegate.sidecar")
ACKED_FILE = "ledger-acked.json"
BATCH_MAX = 1000  # entries per sync
BATCH_BYTES = 2 * 1024 * 1024  # read at most this much of a file per top-up


class _Seq(msgspec.Struct):
    seq: int


class _Watermark(msgspec.Struct):
    stream: str
    seq: int


def read_watermark(directory: Path, stream: str) -> int:
    """The acknowledged seq kept on the volume for ``stream``; 0 when none (or another stream's)."""
    try:
        found = msgspec.json.decode((directory / ACKED_FILE).read_bytes(), type=_Watermark)
    except FileNotFoundError:
        return 0
    except (OSError, msgspec.DecodeError) as exc:
        log.warning("ledger watermark unreadable, shipping from the start: %s", exc)
        return 0
    return found.seq if found.stream == stream else 0


def write_watermark(directory: Path, stream: str, seq: int) -> None:
    """Replace the watermark atomically: a crash leaves the old one or the new one, never half."""
    write_atomic(
        directory / ACKED_FILE, msgspec.json.encode(_Watermark(stream=stream, seq=seq)) + b"\n", mode=0o640
    )


class LedgerShipper:
    """Reads the ledger forward from the watermark; keeps what was read until it is acknowledged."""

    def __init__(self, directory: Path, stream: str, *, batch_max: int = BATCH_MAX) -> None:
        self.directory = directory
        self.stream = stream
        self.batch_max = batch_max
        self.acked = read_watermark(directory, stream)
        self._pending: list[tuple[int, bytes]] = []
        self._file = 0  # index of the file being read (0: not positioned yet)
        self._offset = 0
        self._at_end = False  # the last read found nothing new

    def _files(self) -> dict[int, Path]:
        return {index: path for path in ledger_files([self.directory]) if (index := file_index(path))}

    def _read_more(self, room: int) -> None:
        files = self._files()
        if not files:
            self._at_end = True
            return
        if self._file not in files:
            self._file, self._offset = min(files), 0
        while room > 0:
            path = files[self._file]
            with path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read(BATCH_BYTES)
            end = data.rfind(b"\n")
            if end >= 0:
                for line in data[: end + 1].split(b"\n")[:-1]:
                    self._offset += len(line) + 1
                    seq = msgspec.json.decode(line, type=_Seq).seq
                    if seq > self.acked and (not self._pending or seq > self._pending[-1][0]):
                        self._pending.append((seq, line))
                        room -= 1
                        if room == 0:
                            break
                if room == 0:
                    break
                if len(data) == BATCH_BYTES:
                    continue  # more of this file
            later = [index for index in files if index > self._file]
            if not later:
                self._at_end = True
                return
            self._file, self._offset = min(later), 0
        self._at_end = False

    def batch(self) -> list[bytes]:
        """The next lines to ship (oldest first): the unacknowledged ones already read, topped up."""
        room = self.batch_max - len(self._pending)
        if room > 0:
            try:
                self._read_more(room)
            except (OSError, msgspec.DecodeError) as exc:
                log.warning("cannot read the ledger to ship it: %s", exc)
        return [line for _, line in self._pending[: self.batch_max]]

    @property
    def behind(self) -> bool:
        """True while lines read (or perhaps still unread) wait for the authority's acknowledgement."""
        return bool(self._pending) or not self._at_end

    async def acknowledge(self, seq: int) -> None:
        """The authority holds every entry up to ``seq``: forget them here and move the watermark."""
        self._pending = [item for item in self._pending if item[0] > seq]
        if seq <= self.acked:
            return
        self.acked = seq
        try:
            await asyncio.to_thread(write_watermark, self.directory, self.stream, seq)
        except OSError as exc:  # a full or read-only volume: a restart re-ships (idempotently)
            log.warning("cannot keep the ledger watermark in %s: %s", self.directory, exc)
