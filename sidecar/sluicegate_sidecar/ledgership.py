"""Fleet mode: which local ledger lines the budget authority has not acknowledged yet.

The local JSONL stays the write-ahead log; this reads it forward from the acknowledged watermark
(``LEDGER_DIR/ledger-acked.json``, replaced atomically) and hands ``authorityclient`` the next
lines to ship with a lease sync. When the authority acknowledges a seq (every entry up to it is in
PostgreSQL), the watermark moves; after a restart on the same volume, shipping resumes from it.
Lines are shipped byte for byte, so their hash chain stays checkable in the database.

With a retention (``--ledger-retain-hours``), closed files whose every line is acknowledged and that
were last written longer ago than it are deleted, oldest first (``prune``): never the file being
written, never the one holding the chain's last entry (the writer continues the chain from it), never
one with a line the database has not acknowledged. What was deleted is recorded first
(``ledger-pruned.json``), so ``sluicegate ledger verify`` checks the kept files from there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from sluicegate_contract.atomicfile import write_atomic
from sluicegate_contract.ledgerfiles import PRUNED_FILE, Pruned, file_index, ledger_files, read_pruned, tail

log = logging.getLogger("sluicegate.sidecar")
ACKED_FILE = "ledger-acked.json"
BATCH_MAX = 1000  # entries per sync
BATCH_BYTES = 2 * 1024 * 1024  # read at most this much of a file per top-up
PRUNE_EVERY = 60.0  # seconds between pruning passes (at most)


class _Seq(msgspec.Struct):
    seq: int


class _Link(msgspec.Struct):
    seq: int
    hash: str


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


def _last_seq(directory: Path) -> int:
    """The seq of the chain's last entry on the volume (0: none), as the writer will find it."""
    for path in reversed(ledger_files([directory]) if directory.is_dir() else []):
        _, line = tail(path)
        if line is not None:
            return msgspec.json.decode(line, type=_Link).seq
    return 0


def _stream_reused(directory: Path, stream: str) -> str | None:
    """Why the local ledger cannot go on as ``stream`` (the sidecar id that survived beside it), if so:
    it was wiped, or it ends below a seq the database acknowledged. Its next seqs would be ones the
    database already holds for the stream, with other entries."""
    if not (directory.is_dir() and ledger_files([directory])):
        return "is gone (the id survived, the ledger files did not)"
    pruned = read_pruned(directory)
    floor = max(read_watermark(directory, stream), pruned.seq if pruned and pruned.stream == stream else 0)
    last = _last_seq(directory)
    return f"ends at seq {last}, below seq {floor} the database acknowledged" if last < floor else None


def ledger_stream(ledger_dir: Path, identity: tuple[str, Callable[[Path], str]]) -> str:
    """The sidecar id, which names its ledger stream in the database (``identity``: its file name and
    the function that reads or creates it). Called before the writer opens the ledger: when the ledger
    the id numbered is gone or cut short (a wiped or restored volume with the id file left), what is
    left of it (all in the database already) moves to ``stream-<old id>/`` and a new id starts a new
    chain from seq 1, so no seq of the old stream is reused."""
    id_file, sidecar_id = identity
    if not (ledger_dir / id_file).exists():
        return sidecar_id(ledger_dir)
    old = sidecar_id(ledger_dir)
    try:
        reason = _stream_reused(ledger_dir, old)
    except (OSError, msgspec.DecodeError):  # a damaged ledger: the writer reports it (unhealthy)
        return old
    if reason is None:
        return old
    try:
        kept = [*ledger_files([ledger_dir]), ledger_dir / ACKED_FILE, ledger_dir / PRUNED_FILE]
        if any(path.exists() for path in kept):
            aside = ledger_dir / f"stream-{old}"
            aside.mkdir(exist_ok=True)
            for path in kept:
                if path.exists():
                    path.rename(aside / path.name)
        (ledger_dir / id_file).unlink()
    except OSError as exc:
        log.error("the ledger of sidecar %s %s, and its id cannot be replaced: %s", old, reason, exc)
        return old
    new = sidecar_id(ledger_dir)
    log.warning("the ledger of sidecar %s %s: it goes on as sidecar %s (a new stream)", old, reason, new)
    return new


def write_watermark(directory: Path, stream: str, seq: int) -> None:
    """Replace the watermark atomically: a crash leaves the old one or the new one, never half."""
    write_atomic(
        directory / ACKED_FILE, msgspec.json.encode(_Watermark(stream=stream, seq=seq)) + b"\n", mode=0o640
    )


def prune(directory: Path, stream: str, acked: int, before: float) -> list[Path]:
    """Delete the oldest closed files whose lines are all acknowledged (up to ``acked``) and that were
    last written before ``before`` (epoch seconds); returns the deleted files."""
    files = sorted((index, path) for path in ledger_files([directory]) if (index := file_index(path)))
    lasts: list[tuple[int, Path, _Link | None]] = []
    for index, path in files:
        _, line = tail(path)
        lasts.append((index, path, msgspec.json.decode(line, type=_Link) if line is not None else None))
    end = max((i for i, (_, _, last) in enumerate(lasts) if last is not None), default=0)
    doomed: list[tuple[int, Path, _Link]] = []
    for index, path, last in lasts[: min(end, len(lasts) - 1)]:  # never the chain's end, nor the newest
        if last is None or last.seq > acked or path.stat().st_mtime >= before:
            break
        doomed.append((index, path, last))
    if not doomed:
        return []
    index, _, last = doomed[-1]
    record = Pruned(stream=stream, seq=last.seq, hash=last.hash, file=index)
    write_atomic(directory / PRUNED_FILE, msgspec.json.encode(record) + b"\n", mode=0o640)
    for _, path, _ in doomed:
        path.unlink()
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return [path for _, path, _ in doomed]


class LedgerShipper:
    """Reads the ledger forward from the watermark; keeps what was read until it is acknowledged."""

    def __init__(
        self, directory: Path, stream: str, *, batch_max: int = BATCH_MAX, retain_seconds: float | None = None
    ) -> None:
        self.directory = directory
        self.stream = stream
        self.batch_max = batch_max
        self.retain_seconds = retain_seconds  # None: never delete acknowledged files
        self._prune_at = 0.0  # monotonic time of the next pruning pass
        self._pruning: asyncio.Task[None] | None = None
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
            except FileNotFoundError:  # pruned meanwhile (acknowledged): start again at the oldest
                self._file, self._offset = 0, 0
            except (OSError, msgspec.DecodeError) as exc:
                log.warning("cannot read the ledger to ship it: %s", exc)
        return [line for _, line in self._pending[: self.batch_max]]

    @property
    def filled(self) -> bool:
        """The last read stopped at ``batch_max`` lines, not at the end of the ledger: more wait."""
        return not self._at_end

    @property
    def behind(self) -> bool:
        """True while lines read (or perhaps still unread) wait for the authority's acknowledgement."""
        return bool(self._pending) or not self._at_end

    async def acknowledge(self, seq: int) -> None:
        """The authority holds every entry up to ``seq``: forget them here and move the watermark;
        then, with a retention, delete the files it covers that are old enough."""
        self._pending = [item for item in self._pending if item[0] > seq]
        if seq > self.acked:
            try:
                await asyncio.to_thread(write_watermark, self.directory, self.stream, seq)
            except OSError as exc:  # a full or read-only volume: a restart re-ships (idempotently)
                log.warning("cannot keep the ledger watermark in %s: %s", self.directory, exc)
                self.acked = seq
                return  # prune only what a durable watermark covers
            self.acked = seq
        busy = self._pruning is not None and not self._pruning.done()
        if self.retain_seconds is None or busy or time.monotonic() < self._prune_at or self.acked == 0:
            return
        self._prune_at = time.monotonic() + min(PRUNE_EVERY, self.retain_seconds)
        # In the background: its fsyncs and unlinks must not hold up the sync (leases ride on it).
        self._pruning = asyncio.get_running_loop().create_task(self._prune(self.retain_seconds))

    async def pruned(self) -> None:
        """Wait for the pruning pass under way, if any."""
        if self._pruning is not None:
            await self._pruning

    async def _prune(self, retain_seconds: float) -> None:
        before = time.time() - retain_seconds
        try:
            gone = await asyncio.to_thread(prune, self.directory, self.stream, self.acked, before)
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("cannot prune the acknowledged ledger files in %s: %s", self.directory, exc)
            return
        if gone:
            log.info(
                "pruned %s acknowledged ledger files (%s to %s); the chain goes on in the database",
                len(gone), gone[0].name, gone[-1].name,
            )  # fmt: skip
