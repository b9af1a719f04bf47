"""The spend ledger: hash-chained JSONL files, written with group commit and read back.

The only persistence module (entries are formatted and hashed in ``sluicegate_contract.ledger``).
One line per settled request; an entry is acknowledged once it is written to the file (handed to the
kernel: a killed process cannot lose it), or once it is fdatasynced in sync mode; a torn tail left by
a crash is cut off at open.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import msgspec

from sluicegate_contract.ledger import GENESIS, Entry, chain_entry, decode_entry
from sluicegate_contract.ledgerfiles import LedgerError, file_index, file_name, ledger_files, tail

DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
_MAX_RETRY = 10_000  # entries kept in memory for retry while the disk refuses writes


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_Pending = tuple[Entry, "asyncio.Future[Entry] | None"]
_Written = tuple[Entry, Entry, "asyncio.Future[Entry] | None"]  # (as appended, chained, its waiter)


def _sync_files(paths: Sequence[Path], directory: Path | None) -> None:
    """fdatasync each file (by path: any descriptor of a file flushes it), then the directory. A file
    gone was pruned (fleet mode: only once the database held every line of it): nothing to flush."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
    if directory is not None:
        _sync_dir(directory)


class Ledger:
    """Appends entries to ``DIR/ledger-NNNNNN.jsonl`` (ledger before reply, docs/architecture.md).

    ``await append(entry)`` returns the chained entry once its line is **written**: handed to the
    kernel with ``os.write`` (never buffered in this process), so a killed process (SIGKILL, OOM)
    cannot lose it. ``fdatasync`` runs in a worker thread in the background, batched: when
    ``batch_max`` written lines wait for it or ``batch_delay`` seconds after the first. A ledger
    opened with ``sync=True`` returns from ``append`` only once the line is fdatasynced too.

    Appends made in the same event-loop turn share one write (group commit); lines written while an
    fdatasync runs share the next one. A file past ``max_file_bytes`` is closed and the chain goes on
    in the next. When the disk refuses a write (or, with ``sync=True``, an fdatasync), ``healthy``
    turns False, the waiting appends raise ``LedgerError`` and their entries are kept and written by
    a later append or ``probe()``. A failed background fdatasync turns ``healthy`` False until one
    succeeds.
    """

    def __init__(
        self, directory: Path, max_file_bytes: int, batch_max: int, batch_delay: float, sync: bool
    ) -> None:
        self.directory = directory
        self.sync = sync
        self._max_file_bytes = max_file_bytes
        self._batch_max = batch_max
        self._batch_delay = batch_delay
        self._fd: int | None = None
        self._index = 1
        self._size = 0  # bytes written in the current file
        self._seq = 0
        self._hash = GENESIS
        self._pending: list[_Pending] = []  # waiting for the write
        self._write_soon: asyncio.Handle | None = None
        self._unsynced: list[_Written] = []  # with ``sync``: written, waiting for their fdatasync
        self._unsynced_lines = 0  # lines written since the last fdatasync began
        self._dirty: set[int] = set()  # indexes of files with lines not yet fdatasynced
        self._dir_dirty = False  # a file was created since the directory was last synced
        self._synced_at = (1, 0)  # (file index, size) the last fdatasync covered
        self._syncer: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._sync_problem = False
        self.problem: str | None = None
        self.dropped = 0  # entries lost after _MAX_RETRY waited for a disk that stayed full

    @classmethod
    def open(
        cls,
        directory: str | Path,
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        batch_max: int = 256,
        batch_delay: float = 0.005,
        sync: bool = False,
    ) -> Ledger:
        """Open (creating) the ledger in ``directory``; an unusable disk gives an unhealthy ledger."""
        ledger = cls(Path(directory), max_file_bytes, batch_max, batch_delay, sync)
        try:
            ledger._prepare()
        except (OSError, LedgerError) as exc:
            ledger._fail(exc)
        return ledger

    @property
    def healthy(self) -> bool:
        return self.problem is None

    @property
    def last_seq(self) -> int:
        return self._seq

    def _prepare(self) -> None:
        """Find the chain's end, cut a torn tail, open the last file for appending."""
        self._close_fd()
        self.directory.mkdir(parents=True, exist_ok=True)
        files = ledger_files([self.directory])
        seq, last_hash = 0, GENESIS
        for path in reversed(files):
            durable, line = tail(path)
            if durable != path.stat().st_size:
                os.truncate(path, durable)
            if line is not None:
                try:
                    entry = decode_entry(line)
                except msgspec.DecodeError as exc:
                    raise LedgerError(f"{path}: the last line is not an entry (ledger verify)") from exc
                seq, last_hash = entry.seq, entry.hash
                break
        self._index = (file_index(files[-1]) or 1) if files else 1
        fd = os.open(self.directory / file_name(self._index), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._fd, self._size = fd, os.fstat(fd).st_size
        self._seq, self._hash = seq, last_hash
        if not self._unsynced:
            self._synced_at = (self._index, self._size)
        if not files:
            _sync_dir(self.directory)

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    def _rotate(self) -> None:
        """Go on in the next file; the closed one's lines are fdatasynced by path in the background."""
        self._close_fd()
        self._index += 1
        fd = os.open(self.directory / file_name(self._index), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._fd, self._size = fd, os.fstat(fd).st_size
        self._dir_dirty = True

    def _write(self, entries: Sequence[Entry]) -> list[Entry]:
        """Chain and write a batch with ``os.write`` (in the event loop: a page-cache append).
        All or nothing."""
        if self._fd is None:
            self._prepare()
        seq, prev = self._seq, self._hash
        chained: list[Entry] = []
        lines: list[bytes] = []
        for entry in entries:
            seq += 1
            digest, line = chain_entry(entry, seq, prev)
            lines.append(line)
            chained.append(msgspec.structs.replace(entry, seq=seq, prev_hash=prev, hash=digest))
            prev = digest
        data = b"".join(lines)
        if self._size > 0 and self._size + len(data) > self._max_file_bytes:
            self._rotate()
        assert self._fd is not None
        try:
            _write_all(self._fd, data)
        except OSError:
            try:  # cut what reached the file so a retry cannot duplicate it
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            self._close_fd()  # the next attempt re-reads the chain's end from the disk
            raise
        self._size += len(data)
        self._seq, self._hash = seq, prev
        self._dirty.add(self._index)
        return chained

    def _fail(self, exc: BaseException) -> None:
        self.problem = f"ledger cannot write in {self.directory}: {exc}"

    async def append(self, entry: Entry) -> Entry:
        """Record ``entry``; returns it chained once written (with ``sync=True``: once fdatasynced).
        Raises ``LedgerError`` if the disk refused it. A cancelled caller does not cancel the write.
        """
        return await self.submit(entry)

    def submit(self, entry: Entry) -> asyncio.Future[Entry]:
        """Queue ``entry`` for this loop turn's write; the future is ``append``'s outcome. The write
        happens whatever becomes of the future (cancelling it only drops the acknowledgement)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Entry] = loop.create_future()
        self._pending.append((entry, future))
        if self._write_soon is None:  # every append of this loop turn goes in the same write
            self._write_soon = loop.call_soon(self._write_pending)
        return future

    def write_now(self) -> None:
        """Write what this loop turn has queued now, not at the turn's end (no other can join it)."""
        if self._write_soon is not None:
            self._write_soon.cancel()
            self._write_pending()

    def _write_pending(self) -> None:
        self._write_soon = None
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            written = self._write([entry for entry, _ in batch])
        except (OSError, LedgerError) as exc:
            self._fail(exc)
            self._keep_for_retry(batch)
            return
        if not self._sync_problem:
            self.problem = None
        self._unsynced_lines += len(batch)
        for (entry, future), done in zip(batch, written, strict=True):
            if self.sync:
                self._unsynced.append((entry, done, future))
            elif future is not None and not future.done():
                future.set_result(done)
        self._kick_syncer()

    def _kick_syncer(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._syncer is None or self._syncer.done():
            self._syncer = asyncio.get_running_loop().create_task(self._sync_loop())
        elif self._unsynced_lines >= self._batch_max:
            self._wake.set()

    async def _sync_loop(self) -> None:
        assert self._wake is not None
        while self._dirty or self._dir_dirty:
            if self._unsynced_lines < self._batch_max and self._batch_delay > 0:
                try:
                    async with asyncio.timeout(self._batch_delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            count, mark = len(self._unsynced), (self._index, self._size)
            self._unsynced_lines = 0
            dirty, self._dirty = self._dirty, set()
            dir_dirty, self._dir_dirty = self._dir_dirty, False
            paths = [self.directory / file_name(index) for index in sorted(dirty)]
            try:
                await asyncio.to_thread(_sync_files, paths, self.directory if dir_dirty else None)
            except OSError as exc:
                self._dirty |= dirty
                self._dir_dirty |= dir_dirty
                self._sync_failed(exc)
                return
            synced, self._unsynced = self._unsynced[:count], self._unsynced[count:]
            self._synced_at = mark
            if self._sync_problem:
                self._sync_problem, self.problem = False, None
            for _, done, future in synced:
                if future is not None and not future.done():
                    future.set_result(done)

    def _sync_failed(self, exc: OSError) -> None:
        """A failed fdatasync. Without ``sync`` the lines were acknowledged and stay: the ledger is
        unhealthy until an fdatasync succeeds. With ``sync`` nothing unsynced was acknowledged: the
        lines are cut back (when still in the current file) and their entries kept for retry."""
        self._fail(exc)
        self._sync_problem = True
        if not self.sync:
            return
        waiting, self._unsynced = self._unsynced, []
        index, size = self._synced_at
        if index == self._index:
            try:
                os.truncate(self.directory / file_name(index), size)
            except OSError:
                pass
            self._close_fd()  # the next write re-reads the chain's end from the disk
            self._dirty.discard(index)
            self._keep_for_retry([(entry, future) for entry, _, future in waiting] + self._pending)
        else:  # the lines span a rotation: they stay written, unconfirmed
            self._keep_for_retry([(entry, future) for entry, _, future in waiting], keep=False)

    def _keep_for_retry(self, waiting: list[_Pending], *, keep: bool = True) -> None:
        """Fail every waiting append (the disk refuses writes) but keep its entry for a later attempt."""
        error = LedgerError(self.problem)
        for _, future in waiting:
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # marked as retrieved: a caller that went away must not warn
        if keep:
            self.dropped += max(0, len(waiting) - _MAX_RETRY)
            self._pending = [(entry, None) for entry, _ in waiting[-_MAX_RETRY:]]

    async def flush(self) -> None:
        """Write and fdatasync whatever waits (entries kept after a failure too); raises
        ``LedgerError`` if the disk refuses."""
        self._write_pending()
        if self._dirty or self._dir_dirty:
            self._kick_syncer()
        if self._wake is not None:
            self._wake.set()  # no batching delay
        if self._syncer is not None:
            await asyncio.shield(self._syncer)
        if not self.healthy:
            raise LedgerError(self.problem)

    def _probe_disk(self) -> None:
        probe = self.directory / ".probe"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            _write_all(fd, b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)

    async def probe(self) -> bool:
        """Try the disk again (entries kept after a failure first); True once the ledger can write."""
        if self._pending or self._dirty or (self._syncer is not None and not self._syncer.done()):
            try:
                await self.flush()
            except LedgerError:
                return False
            return True
        try:
            if self._fd is None:
                self._prepare()
            await asyncio.to_thread(self._probe_disk)
        except (OSError, LedgerError) as exc:
            self._fail(exc)
            return False
        self._sync_problem, self.problem = False, None
        return True

    async def aclose(self) -> None:
        """Flush and close; call on shutdown (SIGTERM drain)."""
        try:
            await self.flush()
        finally:
            self._close_fd()
