"""Fleet mode's lease journal on disk (``leases.journal`` beside the ledger): the I/O shell of
``leasejournal``.

The journal is a file mapped into memory (``mmap``, shared): an append is a copy into the page cache,
no system call, and a killed process (SIGKILL, OOM) loses none of it (the kernel owns those pages and
writes them back; the next process reads them). The file's blocks are allocated when it is created
(``posix_fallocate``), so a full volume refuses the journal then, never a write into it later (which
would be a SIGBUS); past its end the file is zeros. A kill in the middle of a copy leaves at most the
last record torn, which the next process ignores (``leasejournal.written``): a reservation is recorded
before its request can reach a provider, so a torn one never went out; a torn settlement counts its
reservation at its worst case, as a request killed in flight does. A settlement (``s``) is recorded
once its ledger line is written. A node crash can lose any record, and then the next boot finds a
journal of another boot, proves nothing with it, and the leases stay charged in full (safe: the cap
never counts on a lost record). An exclusive ``flock`` keeps two live processes from sharing one
journal (the second journals nothing and corrects nothing). When the file is full the journal is
rewritten as one snapshot of its state into a new file (renamed over it), so a long-lived sidecar's
journal stays small. A journal that cannot be written is removed: its leases are then charged in full
at the next start, never less than they cost.
"""

from __future__ import annotations

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
COMPACT_BYTES = 1 << 20  # the file's size (at least twice its last snapshot): rewritten when full
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def boot_id(path: Path = BOOT_ID_FILE) -> str:
    """This boot's id (the same for every process until the node reboots); "" when unknown."""
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError:
        return ""


class LeaseJournal:
    """The journal of this process; ``recover`` first, then append."""

    def __init__(
        self, directory: Path, boot: str | None = None, *, compact_bytes: int = COMPACT_BYTES
    ) -> None:
        self.path = directory / JOURNAL_FILE
        self.boot = boot_id() if boot is None else boot
        self.state = lj.JournalState()
        self._compact_bytes = compact_bytes
        self._fd: int | None = None  # the file recovered: held (with its lock) until the first rewrite
        self._map: mmap.mmap | None = None
        self._size = 0  # bytes of records in the map; zeros after them

    @property
    def active(self) -> bool:
        return self._map is not None

    def recover(self) -> dict[str, tuple[LeaseKey, int]]:
        """Lock the journal, fold what an earlier process left, and start this process's journal
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
                lines = lj.written(previous.read()).splitlines()
            if lines and self.boot:
                folded = lj.fold(lines, self.boot)
                owed, offline = folded.owed(), folded.offline
            elif lines:
                raise lj.Unproven("this node's boot id is unknown")
        except lj.Unproven as exc:
            log.warning(
                "the lease journal %s proves nothing (%s): its leases stay charged in full", self.path, exc
            )
        except OSError as exc:
            log.warning(
                "the lease journal %s is unreadable (%s): its leases stay charged in full", self.path, exc
            )
        self._fd = fd
        for lease_id, (key, spent) in owed.items():
            self.state.lease(lease_id, key, spent, offline=lease_id in offline)
        self._rewrite()
        if owed:
            log.info("an earlier process left %s leases unreported: reporting what they cost", len(owed))
        return owed

    # -- appends ----------------------------------------------------------------------------

    def lease(self, lease_id: str, key: LeaseKey, *, offline: bool = False) -> None:
        if self._map is not None and lease_id not in self.state.leases:
            self.state.lease(lease_id, key, offline=offline)
            self._append(lj.lease_record(lease_id, key, offline=offline))

    def reserve(self, ref: int, amount: int, lease_ids: tuple[str, ...]) -> None:
        if self._map is not None:
            self.state.reserve(ref, amount, lease_ids)
            self._append(lj.reserve_record(ref, amount, lease_ids))

    def settle(self, ref: int, actual: int) -> None:
        if self._map is not None and ref in self.state.reserved:
            self.state.settle(ref, actual)
            self._append(lj.settle_record(ref, actual))

    def done(self, lease_id: str) -> None:
        if self._map is not None and lease_id in self.state.leases:
            self.state.done(lease_id)
            self._append(lj.done_record(lease_id))

    def _append(self, record: bytes) -> None:
        """Copy ``record`` into the map after the others; a full map is rewritten as a snapshot of
        ``state`` (which holds the record already) in a new file instead."""
        journal = self._map
        assert journal is not None
        end = self._size + len(record)
        if end > len(journal):
            self._rewrite()
            return
        journal[self._size : end] = record
        self._size = end

    def _rewrite(self) -> None:
        """Replace the journal with one snapshot of ``state`` in a new file (renamed over it), its
        blocks allocated up to twice the snapshot (``COMPACT_BYTES`` at least) and mapped."""
        if self._fd is None:  # not recovered, or given up (a map always has its descriptor)
            return
        data = lj.snapshot(self.boot, self.state)
        size = -(-max(self._compact_bytes, 2 * len(data)) // mmap.PAGESIZE) * mmap.PAGESIZE
        temporary = self.path.with_name(self.path.name + ".new")
        try:
            new = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            journal: mmap.mmap | None = None
            try:
                fcntl.flock(new, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.posix_fallocate(new, 0, size)  # a full volume refuses here, not in a later copy
                journal = mmap.mmap(new, size)
                journal[: len(data)] = data
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
        self._fd, self._map, self._size = new, journal, len(data)

    def _give_up(self, exc: OSError) -> None:
        """A journal missing a record would under-report: remove it, journal nothing more."""
        log.error("lease journal write failed (%s): removed; this run's leases stay charged in full", exc)
        with contextlib.suppress(OSError):
            self.path.unlink()
        self.close()

    def close(self) -> None:
        """Release the journal (what a killed process leaves: every record copied is in the file)."""
        self._release()

    def _release(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
