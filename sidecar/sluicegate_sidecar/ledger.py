"""The spend ledger: hash-chained JSONL files, written with group commit and read back.

The only persistence module (entries are formatted and hashed in ``ledger_entry``). One line per settled
request; an entry is acknowledged only once it is fsynced; a torn tail left by a crash is cut off at open.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

# The entry format lives in ledger_entry; re-exported so ``from .ledger import Entry, ...`` keeps working.
from .ledger_entry import GENESIS as GENESIS
from .ledger_entry import CostBasis as CostBasis
from .ledger_entry import Entry as Entry
from .ledger_entry import EntryAttribution as EntryAttribution
from .ledger_entry import EntryUsage as EntryUsage
from .ledger_entry import chain_entry
from .ledger_entry import charges as charges
from .ledger_entry import decode_entry as decode_entry
from .ledger_entry import entry_attribution as entry_attribution
from .ledger_entry import entry_hash as entry_hash
from .ledger_entry import entry_line as entry_line
from .ledger_entry import entry_usage as entry_usage
from .ledger_entry import format_time as format_time
from .ledger_entry import parse_time as parse_time

DEFAULT_LEDGER_DIR = "/var/lib/sluicegate/ledger"
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
_NAME = re.compile(r"^ledger-(\d{6,})\.jsonl$")
_MAX_RETRY = 10_000  # entries kept in memory for retry while the disk refuses writes


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
    _, last = _tail(path)
    try:
        return last is not None and parse_time(decode_entry(last).time) < instant
    except (msgspec.DecodeError, ValueError):
        return False  # read it in full: the bad line is reported where it is


def _tail(path: Path) -> tuple[int, bytes | None]:
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


class Ledger:
    """Appends entries to ``DIR/ledger-NNNNNN.jsonl``; ``await append(entry)`` returns once fsynced.

    Concurrent appends share one write and one fsync (group commit): a batch is written when
    ``batch_max`` entries wait or ``batch_delay`` seconds after the first. A file past
    ``max_file_bytes`` is closed and the chain goes on in the next. When the disk refuses a write,
    ``healthy`` turns False, the waiting appends raise ``LedgerError`` and their entries are kept and
    written by a later append or ``probe()``.
    """

    def __init__(self, directory: Path, max_file_bytes: int, batch_max: int, batch_delay: float) -> None:
        self.directory = directory
        self._max_file_bytes = max_file_bytes
        self._batch_max = batch_max
        self._batch_delay = batch_delay
        self._fd: int | None = None
        self._index = 1
        self._size = 0  # bytes durable in the current file
        self._seq = 0
        self._hash = GENESIS
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._full: asyncio.Event | None = None
        self.problem: str | None = None
        self.dropped = 0  # entries lost after _MAX_RETRY waited for a disk that stayed full

    @classmethod
    def open(
        cls,
        directory: str | Path,
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        batch_max: int = 256,
        batch_delay: float = 0.002,
    ) -> Ledger:
        """Open (creating) the ledger in ``directory``; an unusable disk gives an unhealthy ledger."""
        ledger = cls(Path(directory), max_file_bytes, batch_max, batch_delay)
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
            durable, line = _tail(path)
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
        self._close_fd()
        self._index += 1
        fd = os.open(self.directory / file_name(self._index), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._fd, self._size = fd, os.fstat(fd).st_size
        _sync_dir(self.directory)

    def _write(self, entries: Sequence[Entry]) -> list[Entry]:
        """Chain, write and fsync a batch (in a worker thread, one at a time). All or nothing."""
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
            os.fdatasync(self._fd)
        except OSError:
            try:  # cut what reached the file so a retry cannot duplicate it
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            self._close_fd()  # the next attempt re-reads the chain's end from the disk
            raise
        self._size += len(data)
        self._seq, self._hash = seq, prev
        return chained

    def _fail(self, exc: BaseException) -> None:
        self.problem = f"ledger cannot write in {self.directory}: {exc}"

    async def append(self, entry: Entry) -> Entry:
        """Record ``entry``; returns it chained once it is on disk. Raises ``LedgerError`` if not.

        A cancelled caller does not cancel the write.
        """
        future: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        self._kick()
        return await future

    def _kick(self) -> None:
        if self._full is None:
            self._full = asyncio.Event()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        elif len(self._pending) >= self._batch_max:
            self._full.set()

    async def _flush_loop(self) -> None:
        assert self._full is not None
        while self._pending:
            if len(self._pending) < self._batch_max and self._batch_delay > 0:
                try:
                    async with asyncio.timeout(self._batch_delay):
                        await self._full.wait()
                except TimeoutError:
                    pass
            self._full.clear()
            batch, self._pending = self._pending, []
            try:
                written = await asyncio.to_thread(self._write, [entry for entry, _ in batch])
            except (OSError, LedgerError) as exc:
                self._fail(exc)
                self._keep_for_retry(batch + self._pending)
                return
            self.problem = None
            for (_, future), done in zip(batch, written, strict=True):
                if future is not None and not future.done():
                    future.set_result(done)

    def _keep_for_retry(self, waiting: list[_Pending]) -> None:
        """Fail every waiting append (the disk refuses writes) but keep its entry for a later attempt."""
        error = LedgerError(self.problem)
        for _, future in waiting:
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # marked as retrieved: a caller that went away must not warn
        self.dropped += max(0, len(waiting) - _MAX_RETRY)
        self._pending = [(entry, None) for entry, _ in waiting[-_MAX_RETRY:]]

    async def flush(self) -> None:
        """Write whatever waits (including entries kept after a failure); raises ``LedgerError`` if not."""
        if self._pending:
            self._kick()
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        if not self.healthy:
            raise LedgerError(self.problem)

    def _probe_disk(self) -> None:
        if self._fd is None:
            self._prepare()
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
        if self._pending or (self._flusher is not None and not self._flusher.done()):
            try:
                await self.flush()
            except LedgerError:
                return False
            return True
        try:
            await asyncio.to_thread(self._probe_disk)
        except (OSError, LedgerError) as exc:
            self._fail(exc)
            return False
        self.problem = None
        return True

    async def aclose(self) -> None:
        """Flush and close; call on shutdown (SIGTERM drain)."""
        try:
            await self.flush()
        finally:
            self._close_fd()
