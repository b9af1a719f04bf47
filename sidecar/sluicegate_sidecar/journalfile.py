"""Fleet mode's lease journal on disk (``leases.journal`` beside the ledger): the I/O shell of
``leasejournal``.

Appends are ``os.write`` to the page cache, no fsync: a killed process (SIGKILL, OOM) cannot lose
them, with one exception on purpose: a settlement (``s``) is held until the end of the event-loop
turn (or the next append, whichever comes first) and written with the others of that turn in one
``write`` (the ledger writes its lines a loop turn at a time, so the settlements of a turn's lines
come together). A kill within that turn loses those settlements: their reservations are then
reported at their worst case, which never lets spend past the cap, only charges more than was spent
(as a request killed in flight is charged). A reservation (``r``) is written before its request can
reach a provider, never held. A node crash can lose any record, and then the next boot finds a
journal of another boot, proves nothing with it, and the leases stay charged in full (safe: the cap
never counts on a lost record). An exclusive ``flock`` keeps two live processes from sharing one
journal (the second journals nothing and corrects nothing). Past ``COMPACT_BYTES`` the journal is
rewritten as one snapshot of its state (a temporary file renamed over it), so a long-lived sidecar's
journal stays small. A failed write removes the journal: its leases are then charged in full at the
next start, never less than they cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from pathlib import Path

from . import leasejournal as lj
from .leases import LeaseKey

log = logging.getLogger("sluicegate.sidecar")
JOURNAL_FILE = "leases.journal"
COMPACT_BYTES = 1 << 20
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
        self._fd: int | None = None
        self._size = 0
        self._limit = compact_bytes  # compact past this: at least twice the last snapshot
        self._held: list[bytes] = []  # settlements waiting for the end of the loop turn
        self._flush_soon: asyncio.Handle | None = None

    @property
    def active(self) -> bool:
        return self._fd is not None

    def recover(self) -> dict[str, tuple[LeaseKey, int]]:
        """Lock the journal, fold what an earlier process left, and start this process's journal
        from the leases it still owes a report for; returns them (lease id → (key, owed micro-USD)).
        Which of them were offline leases is in ``state.offline`` afterwards."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
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
                lines = previous.read().splitlines()
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
        if self._fd is not None and lease_id not in self.state.leases:
            self.state.lease(lease_id, key, offline=offline)
            self._append(lj.lease_record(lease_id, key, offline=offline))

    def reserve(self, ref: int, amount: int, lease_ids: tuple[str, ...]) -> None:
        if self._fd is not None:
            self.state.reserve(ref, amount, lease_ids)
            self._append(lj.reserve_record(ref, amount, lease_ids))

    def settle(self, ref: int, actual: int) -> None:
        """Held until the loop turn ends (or the next append); written at once outside a loop."""
        if self._fd is not None and ref in self.state.reserved:
            self.state.settle(ref, actual)
            self._held.append(lj.settle_record(ref, actual))
            if self._flush_soon is None:
                try:
                    self._flush_soon = asyncio.get_running_loop().call_soon(self.flush)
                except RuntimeError:  # no event loop (offline tools, tests): now
                    self.flush()

    def flush(self) -> None:
        """Write the settlements held."""
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        if self._held and self._fd is not None:
            self._append(b"")

    def done(self, lease_id: str) -> None:
        if self._fd is not None and lease_id in self.state.leases:
            self.state.done(lease_id)
            self._append(lj.done_record(lease_id))

    def _append(self, record: bytes) -> None:
        """Write ``record`` after the settlements held, in one write."""
        fd = self._fd
        assert fd is not None
        if self._held:
            record = b"".join(self._held) + record
            self._held.clear()
        try:
            if self._size + len(record) > self._limit:
                self._rewrite()  # the record is in ``state`` already: the snapshot holds it
                return
            written = os.write(fd, record)
            if written != len(record):
                raise OSError(f"a short write ({written} of {len(record)} bytes)")
            self._size += written
        except OSError as exc:
            self._give_up(exc)

    def _rewrite(self) -> None:
        """Replace the journal with one snapshot of ``state`` (atomically: a new file renamed over it)."""
        fd = self._fd
        if fd is None:
            return
        self._held.clear()  # settled in ``state``: the snapshot holds them
        data = lj.snapshot(self.boot, self.state)
        temporary = self.path.with_name(self.path.name + ".new")
        try:
            new = os.open(
                temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600
            )
            try:
                fcntl.flock(new, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.write(new, data) != len(data):
                    raise OSError("a short write of the journal's snapshot")
                os.replace(temporary, self.path)
            except OSError:
                os.close(new)
                raise
        except OSError as exc:
            self._give_up(exc)
            return
        os.close(fd)
        self._fd, self._size = new, len(data)
        self._limit = max(self._compact_bytes, 2 * len(data))

    def _give_up(self, exc: OSError) -> None:
        """A journal missing a record would under-report: remove it, journal nothing more."""
        log.error("lease journal write failed (%s): removed; this run's leases stay charged in full", exc)
        with contextlib.suppress(OSError):
            self.path.unlink()
        self.close()

    def close(self) -> None:
        """Release the journal (what a killed process leaves: settlements held are not written;
        ``flush`` first on a clean shutdown)."""
        self._held.clear()
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
