"""The spend ledger: hash-chained JSONL files, written with group commit and read back.

The only persistence module. One line per settled request; no prompts or completions, ever.
An entry is acknowledged only once it is fsynced; a torn tail left by a crash is cut off at open.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import msgspec

from .attribution import Attribution
from .budget import Charge
from .providers.base import Usage

DEFAULT_LEDGER_DIR = "/var/lib/sluicegate/ledger"
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
GENESIS = "0" * 64
_NAME = re.compile(r"^ledger-(\d{6,})\.jsonl$")
_MAX_RETRY = 10_000  # entries kept in memory for retry while the disk refuses writes
CostBasis = Literal["exact", "estimated", "unpriced", "reserved"]


class LedgerError(Exception):
    """The ledger cannot record (disk full, read-only, corrupt tail): refuse new paid requests."""


class EntryAttribution(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    namespace: str
    workload: str = ""
    service_account: str = ""
    team: str | None = None
    service: str | None = None
    feature: str | None = None
    user: str | None = None
    end_customer: str | None = None
    tags: dict[str, str] = {}


class EntryUsage(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    input: int
    output: int
    cached: int = 0
    cache_write: int = 0


class Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """One settled request. ``seq``, ``prev_hash`` and ``hash`` are set by the ledger on append."""

    time: str  # RFC 3339, UTC, milliseconds: format_time()
    request_id: str
    attribution: EntryAttribution
    connection: str | None
    provider: str | None
    model: str | None
    requested_model: str
    tier: str | None
    verdict: str
    usage: EntryUsage | None
    cost_micro_usd: int = msgspec.field(name="costMicroUSD")
    cost_basis: CostBasis
    status: int | str  # HTTP status, or "partial" / "client_disconnect" / "upstream_error"
    budget_scopes: tuple[str, ...] = ()
    seq: int = 0
    prev_hash: str = ""
    hash: str = ""


def format_time(instant: datetime) -> str:
    utc = instant.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def entry_attribution(attribution: Attribution) -> EntryAttribution:
    dims = attribution.dimensions
    pod = attribution.pod
    return EntryAttribution(
        namespace=pod.namespace,
        workload=pod.workload,
        service_account=pod.service_account,
        team=dims.get("team"),
        service=dims.get("service"),
        feature=dims.get("feature"),
        user=dims.get("user"),
        end_customer=dims.get("endCustomer"),
        tags=dict(attribution.tags),
    )


def entry_usage(usage: Usage | None) -> EntryUsage | None:
    if usage is None:
        return None
    return EntryUsage(
        input=usage.input_tokens,
        output=usage.output_tokens,
        cached=usage.cached_input_tokens,
        cache_write=usage.cache_write_tokens,
    )


def _canonical(fields: dict[str, Any]) -> bytes:
    return msgspec.json.encode(fields, order="sorted")


def entry_hash(entry: Entry) -> str:
    """SHA-256 hex of the previous hash followed by the canonical JSON of the entry without ``hash``."""
    fields = msgspec.to_builtins(entry)
    del fields["hash"]
    return hashlib.sha256(entry.prev_hash.encode() + _canonical(fields)).hexdigest()


def entry_line(entry: Entry) -> bytes:
    return _canonical(msgspec.to_builtins(entry)) + b"\n"


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


def decode_entry(line: bytes) -> Entry:
    return msgspec.json.decode(line, type=Entry)


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


def charges(entries: Iterable[Entry]) -> Iterator[Charge]:
    """What each entry cost and to which policies, for ``BudgetBook.restore``."""
    for entry in entries:
        attr = entry.attribution
        dims = {
            "team": attr.team,
            "service": attr.service,
            "feature": attr.feature,
            "user": attr.user,
            "endCustomer": attr.end_customer,
        }
        yield Charge(
            time=parse_time(entry.time),
            policies=entry.budget_scopes,
            dimensions={k: v for k, v in dims.items() if v},
            cost_micro_usd=entry.cost_micro_usd,
        )


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
        for entry in entries:
            seq += 1
            linked = msgspec.structs.replace(entry, seq=seq, prev_hash=prev, hash="")
            prev = entry_hash(linked)
            chained.append(msgspec.structs.replace(linked, hash=prev))
        data = b"".join(entry_line(entry) for entry in chained)
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
