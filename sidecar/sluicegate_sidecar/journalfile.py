"""Fleet mode's lease journal on disk (``leases.journal`` beside the ledger): the I/O shell of
``leasejournal``.

The journal is a file mapped into memory (``mmap``, shared): its records first, its table of totals
at its end. A change is a copy into the page cache, no system call, and a killed process (SIGKILL,
OOM) loses none of it (the kernel owns those pages and writes them back; the next process reads
them). A request changes totals only: each is a native 64-bit integer at an 8-byte-aligned place of
the map, written by one store (``memoryview`` item assignment: one fixed-size copy), which a kill
cannot tear. The file's blocks are allocated when it is created (``posix_fallocate``), so a full
volume refuses the journal then, never a write into it later (which would be a SIGBUS); past its
records the file is zeros. A kill in the middle of copying a record leaves at most that record torn,
which the next process ignores (``leasejournal.written``): a lease is recorded before anything is
reserved on it, so a torn lease record holds nothing; a torn close leaves the lease owed, reported
again. A node crash can lose any write, and then the next boot finds a journal of another boot,
proves nothing with it, and the leases stay charged in full (safe: the cap never counts on a lost
write). An exclusive ``flock`` keeps two live processes from sharing one journal (the second journals
nothing and corrects nothing). When its records or its slots run out the journal is rewritten as one
snapshot of its state into a new file (renamed over it). A journal that cannot be written is
removed: its leases are then charged in full at the next start, never less than they cost.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import logging
import mmap
import os
from pathlib import Path

from . import leasejournal as lj
from .leases import LeaseKey

log = logging.getLogger("sluicegate.sidecar")
JOURNAL_FILE = "leases.journal"
COMPACT_BYTES = 1 << 16  # room for records (at least twice its last snapshot's): rewritten when full
SLOTS = 256  # slots of totals at least (at least twice the leases of its last snapshot): 4 KiB
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def boot_id(path: Path = BOOT_ID_FILE) -> str:
    """This boot's id (the same for every process until the node reboots); "" when unknown."""
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError:
        return ""


class LeaseJournal:
    """The journal of this process; ``recover`` first, then record."""

    def __init__(
        self,
        directory: Path,
        boot: str | None = None,
        *,
        compact_bytes: int = COMPACT_BYTES,
        slots: int = SLOTS,
    ) -> None:
        self.path = directory / JOURNAL_FILE
        self.boot = boot_id() if boot is None else boot
        self.state = lj.JournalState.empty(0)
        self._compact_bytes = compact_bytes
        self._slots = slots
        self._fd: int | None = None  # the file recovered: held (with its lock) until the first rewrite
        self._map: mmap.mmap | None = None
        self._whole: memoryview | None = None  # the map, and its table of totals (``state.totals``)
        self._table: memoryview | None = None
        self._size = 0  # bytes of records in the map; zeros after them
        self._room = 0  # bytes for records (the table after them)

    @property
    def active(self) -> bool:
        return self._map is not None

    def recover(self) -> dict[str, tuple[LeaseKey, int]]:
        """Lock the journal, read what an earlier process left, and start this process's journal
        from the leases it still owes a report for; returns them (lease id → (key, owed micro-USD)).
        Which of them were offline leases is in ``state.offline`` afterwards."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log.warning(
                "no lease journal in %s (%s): a restart cannot correct this run's leases", self.path, exc
            )
            return {}
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            log.error("the lease journal %s is held by another live process: not journaling", self.path)
            return {}
        owed: dict[str, tuple[LeaseKey, int]] = {}
        offline: set[str] = set()
        try:
            with open(self.path, "rb") as previous:
                data = previous.read()
            if data.strip(b"\0") and not self.boot:
                raise lj.Unproven("this node's boot id is unknown")
            found = lj.read(data, self.boot)
            owed, offline = found.owed(), found.offline
        except lj.Unproven as exc:
            log.warning(
                "the lease journal %s proves nothing (%s): its leases stay charged in full", self.path, exc
            )
        except OSError as exc:
            log.warning(
                "the lease journal %s is unreadable (%s): its leases stay charged in full", self.path, exc
            )
        self._fd = fd
        self.state = lj.JournalState.empty(len(owed))
        for lease_id, (key, spent) in owed.items():
            self.state.lease(lease_id, key, spent, offline=lease_id in offline)
        self._rewrite()
        if owed:
            log.info("an earlier process left %s leases unreported: reporting what they cost", len(owed))
        return owed

    # -- changes ----------------------------------------------------------------------------

    def lease(self, lease_id: str, key: LeaseKey, *, offline: bool = False) -> None:
        """A lease got: recorded (in a slot of its own) before anything is reserved on it."""
        if self._map is None or lease_id in self.state.leases:
            return
        if self.state.used >= self.state.slots:
            self._rewrite()  # its slots renumbered, twice as many as its leases
            if self._map is None:
                return
        slot = self.state.lease(lease_id, key, offline=offline)
        self._append(lj.lease_record(lease_id, key, slot, offline=offline))

    def reserve(self, lease_ids: tuple[str, ...], amount: int) -> None:
        """Before the request can reach a provider."""
        if self._map is not None:
            self.state.reserve(lease_ids, amount)

    def settle(self, lease_ids: tuple[str, ...], amount: int, actual: int) -> None:
        """Once the settlement's ledger line is written (or it cost nothing)."""
        if self._map is not None:
            self.state.settle(lease_ids, amount, actual)

    def done(self, lease_id: str) -> None:
        if self._map is not None and lease_id in self.state.leases:
            self.state.done(lease_id)
            self._append(lj.done_record(lease_id))

    def _append(self, record: bytes) -> None:
        """Copy ``record`` into the map after the others; full, the journal is rewritten as a
        snapshot of ``state`` (which holds the record's change already) in a new file instead."""
        journal = self._map
        assert journal is not None
        end = self._size + len(record)
        if end > self._room:
            self._rewrite()
            return
        journal[self._size : end] = record
        self._size = end

    def _rewrite(self) -> None:
        """Replace the journal with one snapshot of ``state`` in a new file (renamed over it): room
        for twice its records (``COMPACT_BYTES`` at least) and twice its leases (``SLOTS`` at least),
        its blocks allocated, mapped."""
        if self._fd is None:  # not recovered, or given up (a map always has its descriptor)
            return
        slots = -(-max(self._slots, 2 * len(self.state.leases)) // 256) * 256
        records, state = lj.snapshot(self.boot, self.state, slots)
        room = -(-max(self._compact_bytes, 2 * len(records)) // mmap.PAGESIZE) * mmap.PAGESIZE
        size = room + lj.table_bytes(slots)
        temporary = self.path.with_name(self.path.name + ".new")
        try:
            new = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            journal: mmap.mmap | None = None
            try:
                fcntl.flock(new, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.posix_fallocate(new, 0, size)  # a full volume refuses here, not in a later copy
                journal = mmap.mmap(new, size)
                journal[: len(records)] = records
                journal[room:size] = array.array(lj.TOTAL_FORMAT, state.totals).tobytes()
                os.replace(temporary, self.path)
            except OSError:
                if journal is not None:
                    journal.close()
                os.close(new)
                raise
        except OSError as exc:
            self._give_up(exc)
            return
        self._release()
        whole = memoryview(journal)
        table = whole[room:size].cast(lj.TOTAL_FORMAT)
        state.totals = table
        self._fd, self._map, self._whole, self._table = new, journal, whole, table
        self.state, self._size, self._room = state, len(records), room

    def _give_up(self, exc: OSError) -> None:
        """A journal missing a write would under-report: remove it, journal nothing more."""
        log.error("lease journal write failed (%s): removed; this run's leases stay charged in full", exc)
        with contextlib.suppress(OSError):
            self.path.unlink()
        self.close()

    def close(self) -> None:
        """Release the journal (what a killed process leaves: every write is in the file)."""
        self._release()

    def _release(self) -> None:
        if self._table is not None:
            self.state.totals = self._table.tolist()  # the state outlives the map (read, not written)
            self._table.release()
            self._table = None
        if self._whole is not None:
            self._whole.release()
            self._whole = None
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
