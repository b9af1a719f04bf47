"""Fleet mode's lease journal, the pure part: its records, its running totals and their fold.

A sidecar in fleet mode keeps a journal beside its ledger (``journalfile``) so that a process
restarted on the same volume knows what each lease its previous process left cost: what it settled
plus every reservation never settled, at its reserved worst case (the request may have reached the
provider; that is the bound on what it cost). The authority turns that report into the lease's
charge, instead of its whole amount.

The journal has two parts. **Records**, one JSON array per line, appended rarely: a lease the
sidecar got (``l``, with the slot its totals are kept in; marked ``1`` at its end when the sidecar
opened it itself under ``failMode: static``: an offline lease), a lease the authority has seen
closed (``d``). **Totals**, two per slot: what the lease settled (once its ledger line is written)
and its reservations open (added before a request can reach a provider, taken off once it settled).
A request changes totals only — a store per lease into a fixed place, no record — and a settlement
adds to the first before it takes off the second, so a kill between the two reports more, never
less. A slot is never given to a second lease in one file; a full journal is rewritten as a
snapshot (``snapshot``), its slots renumbered.

The first record names the boot it was written in and the journal's number of slots (``h``): a
journal of an earlier boot may have lost writes with the page cache, so it proves nothing and its
leases stay charged in full. A line that does not parse, a slot out of range or held twice, a total
below zero: the whole journal is unproven the same way. An offline lease is owed the same report as
any, marked offline: the authority has never seen it (the outage may have outlived the process).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Final

import msgspec

from .leases import HeldLease, LeaseBook, LeaseKey

WINDOWS = frozenset({"day", "week", "month"})
# A total in the file: a native signed 64-bit integer, written with one aligned store.
TOTAL_FORMAT: Final = "q"
SLOT_BYTES = 16  # two totals a slot: settled, open


class Unproven(ValueError):
    """The journal cannot vouch for its leases (another boot, a torn or foreign line)."""


class Full(Exception):
    """Every slot of the journal is given: rewrite it (``snapshot``) to take another lease."""


@dataclass(slots=True)
class JournalState:
    """The leases not closed, each with its slot of ``totals`` (``2 * slot``: settled; ``+ 1``: open).

    ``totals`` is the file's table of totals when the journal is mapped, a list otherwise."""

    totals: list[int] | memoryview[int]
    leases: dict[str, tuple[LeaseKey, int]] = field(default_factory=dict)  # id → (key, slot)
    offline: set[str] = field(default_factory=set)  # the leases of ``leases`` opened offline
    used: int = 0  # slots given in this journal (each once)

    @classmethod
    def empty(cls, slots: int) -> JournalState:
        return cls([0] * (2 * slots))

    @property
    def slots(self) -> int:
        return len(self.totals) // 2

    def lease(self, lease_id: str, key: LeaseKey, settled: int = 0, *, offline: bool = False) -> int:
        """Give a new lease the next slot, its totals ``settled`` and nothing open; returns the slot.
        Raises ``Full`` when none is left."""
        slot = self.used
        if slot >= self.slots:
            raise Full(lease_id)
        self.used = slot + 1
        self.totals[2 * slot] = settled
        self.totals[2 * slot + 1] = 0
        self.leases[lease_id] = (key, slot)
        if offline:
            self.offline.add(lease_id)
        return slot

    def reserve(self, lease_ids: Iterable[str], amount: int) -> None:
        """``amount`` reserved on each of those leases (before the request can reach a provider)."""
        leases, totals = self.leases, self.totals
        for lease_id in lease_ids:
            found = leases.get(lease_id)
            if found is not None:
                totals[2 * found[1] + 1] += amount

    def settle(self, lease_ids: Iterable[str], amount: int, actual: int) -> None:
        """A reservation of ``amount`` on those leases settled at ``actual`` (its ledger line written;
        0: released): settled first, then the reservation off, so a kill in between reports more."""
        leases, totals = self.leases, self.totals
        for lease_id in lease_ids:
            found = leases.get(lease_id)
            if found is not None:
                at = 2 * found[1]
                totals[at] += actual
                totals[at + 1] -= amount

    def done(self, lease_id: str) -> None:
        """The authority has seen the lease closed: nothing more is owed on it (its slot stays spent)."""
        self.leases.pop(lease_id, None)
        self.offline.discard(lease_id)

    def owed(self) -> dict[str, tuple[LeaseKey, int]]:
        """Per lease not closed: what it settled plus its open reservations at their worst case."""
        totals = self.totals
        return {
            lease_id: (key, totals[2 * slot] + totals[2 * slot + 1])
            for lease_id, (key, slot) in self.leases.items()
        }

    def open(self) -> int:
        """The reservations open over every lease (one on two leases counts on both)."""
        return sum(self.totals[2 * slot + 1] for _, slot in self.leases.values())


# -- records: one JSON array per line --------------------------------------------------------


def header(boot_id: str, slots: int) -> bytes:
    return msgspec.json.encode(("h", boot_id, slots)) + b"\n"


def lease_record(lease_id: str, key: LeaseKey, slot: int, *, offline: bool = False) -> bytes:
    """An offline lease's record ends in a marker (``1``)."""
    record = ("l", lease_id, key[0], key[1], key[2], slot, *((1,) if offline else ()))
    return msgspec.json.encode(record) + b"\n"


def done_record(lease_id: str) -> bytes:
    return msgspec.json.encode(("d", lease_id)) + b"\n"


def snapshot(boot_id: str, state: JournalState, slots: int) -> tuple[bytes, JournalState]:
    """A journal of ``slots`` slots holding ``state`` alone, its leases in the first slots: its
    records and its state, totals in a list (compaction and a fresh start write it whole)."""
    again = JournalState.empty(slots)
    parts = [header(boot_id, slots)]
    for lease_id, (key, slot) in state.leases.items():
        offline = lease_id in state.offline
        new = again.lease(lease_id, key, state.totals[2 * slot], offline=offline)
        again.totals[2 * new + 1] = state.totals[2 * slot + 1]
        parts.append(lease_record(lease_id, key, new, offline=offline))
    return b"".join(parts), again


def _apply(state: JournalState, record: list[object]) -> None:
    kind = record[0]
    if kind == "l" and len(record) in (6, 7):
        lease_id, policy, split, window, slot, *marker = record[1:]
        if not (isinstance(lease_id, str) and isinstance(policy, str) and isinstance(split, str)):
            raise Unproven("a lease record of the wrong shape")
        if window not in WINDOWS or not isinstance(slot, int) or marker not in ([], [1]):
            raise Unproven("a lease record of the wrong shape")
        if not 0 <= slot < state.slots or any(slot == held for _, held in state.leases.values()):
            raise Unproven("a lease record whose slot is out of range or held")
        state.leases[lease_id] = ((policy, split, window), slot)  # type: ignore[assignment]
        if marker:
            state.offline.add(lease_id)
    elif kind == "d" and len(record) == 2 and isinstance(record[1], str):
        state.done(record[1])
    else:
        raise Unproven(f"an unknown record {kind!r}")


def written(data: bytes) -> bytes:
    """The complete records of a journal's record part: up to its first zero byte (zeros past its
    records), less a last record without its line end (torn by a kill in the middle of its copy)."""
    end = data.find(b"\0")
    if end >= 0:
        data = data[:end]
    return data[: data.rfind(b"\n") + 1]


def table_bytes(slots: int) -> int:
    return SLOT_BYTES * slots


def read(data: bytes, boot_id: str) -> JournalState:
    """What a journal file's bytes add up to (records first, the table of totals at its end); raises
    ``Unproven`` when they cannot vouch for it. An empty file is an empty journal."""
    if not data.strip(b"\0"):
        return JournalState.empty(0)
    first = data[: data.find(b"\n") + 1]
    try:
        head = msgspec.json.decode(first, type=tuple[str, str, int])
    except msgspec.DecodeError as exc:
        raise Unproven("no header this journal can read") from exc
    if head[:2] != ("h", boot_id):
        raise Unproven("written in another boot (writes may have been lost with the page cache)")
    slots = head[2]
    if slots < 0 or table_bytes(slots) > len(data) - len(first):
        raise Unproven("a header whose table does not fit the file")
    cut = len(data) - table_bytes(slots)
    totals = memoryview(data[cut:]).cast(TOTAL_FORMAT).tolist()
    state = fold(written(data[:cut]).splitlines()[1:], JournalState(totals))
    if any(totals[2 * slot] < 0 or totals[2 * slot + 1] < 0 for _, slot in state.leases.values()):
        raise Unproven("a total below zero")
    return state


def fold(lines: Iterable[bytes], state: JournalState) -> JournalState:
    """Apply the records after the header to ``state``; raises ``Unproven`` on any it cannot read."""
    for line in lines:
        if not line.strip():
            continue
        try:
            record = msgspec.json.decode(line, type=list[object])
        except msgspec.DecodeError as exc:
            raise Unproven("a line that does not parse") from exc
        if not record:
            raise Unproven("an empty record")
        _apply(state, record)
    return state


def adopt(
    book: LeaseBook, owed: dict[str, tuple[LeaseKey, int]], offline: Collection[str] = frozenset()
) -> None:
    """Hand an earlier process's leases to ``book`` as retired, nothing in flight: its next syncs send
    each a final report of what it owes, until the authority has seen it closed (then it is dropped).

    Those in ``offline`` are reported as offline leases (spend to record). Their scopes count as
    given their allowance: should the outage still be on, the restart opens no second one (a crash
    loop would otherwise multiply the allowance); the authority's first answer ends that."""
    for lease_id, (key, spent) in owed.items():
        if lease_id not in book.held:
            is_offline = lease_id in offline
            book.held[lease_id] = HeldLease(
                key, lease_id, spent, float("-inf"), settled=spent, current=False, offline=is_offline
            )
            if is_offline:
                book.outage_used.add(key)
