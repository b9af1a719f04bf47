"""Fleet mode's lease journal, the pure part: its records and their fold.

A sidecar in fleet mode appends one record per event to a journal beside its ledger
(``journalfile``): a lease it got (``l``; marked ``1`` at its end when the sidecar opened it itself
under ``failMode: static``: an offline lease), a reservation on leases before the upstream call
(``r``), that reservation settled once its ledger line is written (``s``), a lease the authority
has seen closed (``d``). A sidecar restarted on the same volume folds the journal its previous
process left: each lease not closed is owed a final report of what it settled plus every
reservation never settled, at its reserved worst case (the request may have reached the provider;
that is the bound on what it cost). The authority turns that report into the lease's charge,
instead of its whole amount. An offline lease is owed the same report, marked offline: the authority
has never seen it (the outage may have outlived the process), and without the report its spend would
be in the ledger but never in the accounts.

The first record names the boot it was written in (``h``): a journal of an earlier boot may have
lost records with the page cache, so it proves nothing and its leases stay charged in full. A line
that does not parse makes the whole journal unproven the same way.

Pure: no I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import msgspec

from .leases import HeldLease, LeaseBook, LeaseKey

WINDOWS = frozenset({"day", "week", "month"})


@dataclass(slots=True)
class JournalState:
    """What the journal's records add up to: the leases not closed and the reservations open."""

    leases: dict[str, tuple[LeaseKey, int]] = field(default_factory=dict)  # id → (key, settled)
    reserved: dict[int, tuple[int, tuple[str, ...]]] = field(default_factory=dict)  # ref → (amount, ids)
    offline: set[str] = field(default_factory=set)  # the leases of ``leases`` opened offline

    def lease(self, lease_id: str, key: LeaseKey, settled: int = 0, *, offline: bool = False) -> None:
        if lease_id not in self.leases:
            self.leases[lease_id] = (key, settled)
            if offline:
                self.offline.add(lease_id)

    def reserve(self, ref: int, amount: int, lease_ids: tuple[str, ...]) -> None:
        self.reserved[ref] = (amount, lease_ids)

    def settle(self, ref: int, actual: int) -> None:
        found = self.reserved.pop(ref, None)
        if found is None:
            return
        for lease_id in found[1]:
            held = self.leases.get(lease_id)
            if held is not None:
                self.leases[lease_id] = (held[0], held[1] + actual)

    def done(self, lease_id: str) -> None:
        self.leases.pop(lease_id, None)
        self.offline.discard(lease_id)
        for ref in [ref for ref, (_, ids) in self.reserved.items() if lease_id in ids]:
            amount, ids = self.reserved[ref]
            rest = tuple(i for i in ids if i != lease_id)
            if rest:
                self.reserved[ref] = (amount, rest)
            else:
                del self.reserved[ref]

    def owed(self) -> dict[str, tuple[LeaseKey, int]]:
        """Per lease not closed: what it settled plus its open reservations at their worst case."""
        owed = dict(self.leases)
        for amount, ids in self.reserved.values():
            for lease_id in ids:
                held = owed.get(lease_id)
                if held is not None:
                    owed[lease_id] = (held[0], held[1] + amount)
        return owed


# -- records: one JSON array per line --------------------------------------------------------


def header(boot_id: str) -> bytes:
    return msgspec.json.encode(("h", boot_id)) + b"\n"


def lease_record(lease_id: str, key: LeaseKey, settled: int = 0, *, offline: bool = False) -> bytes:
    """An offline lease's record ends in a marker (``1``); an authority lease's has none, as before."""
    record = ("l", lease_id, key[0], key[1], key[2], settled, *((1,) if offline else ()))
    return msgspec.json.encode(record) + b"\n"


@functools.lru_cache(maxsize=64)  # the same leases take reservation after reservation
def _ids_json(lease_ids: tuple[str, ...]) -> bytes:
    """``lease_ids`` as a reservation record ends: each a JSON string after a comma."""
    return b"".join(b"," + msgspec.json.encode(lease_id) for lease_id in lease_ids)


def reserve_record(ref: int, amount: int, lease_ids: tuple[str, ...]) -> bytes:
    return b'["r",%d,%d%s]\n' % (ref, amount, _ids_json(lease_ids))


def settle_record(ref: int, actual: int) -> bytes:
    return b'["s",%d,%d]\n' % (ref, actual)


def done_record(lease_id: str) -> bytes:
    return msgspec.json.encode(("d", lease_id)) + b"\n"


def snapshot(boot_id: str, state: JournalState) -> bytes:
    """A journal holding ``state`` alone (compaction and a fresh start write it whole)."""
    parts = [header(boot_id)]
    parts.extend(
        lease_record(lease_id, key, settled, offline=lease_id in state.offline)
        for lease_id, (key, settled) in state.leases.items()
    )
    parts.extend(reserve_record(ref, amount, ids) for ref, (amount, ids) in state.reserved.items())
    return b"".join(parts)


class Unproven(ValueError):
    """The journal cannot vouch for its leases (another boot, a torn or foreign line)."""


def _apply(state: JournalState, record: list[object]) -> None:
    kind = record[0]
    if kind == "l" and len(record) in (6, 7):
        lease_id, policy, split, window, settled, *marker = record[1:]
        if not (isinstance(lease_id, str) and isinstance(policy, str) and isinstance(split, str)):
            raise Unproven("a lease record of the wrong shape")
        if window not in WINDOWS or not isinstance(settled, int) or marker not in ([], [1]):
            raise Unproven("a lease record of the wrong shape")
        state.lease(lease_id, (policy, split, window), settled, offline=bool(marker))  # type: ignore[arg-type]
    elif kind == "r" and len(record) >= 3:
        ref, amount, *ids = record[1:]
        if not (isinstance(ref, int) and isinstance(amount, int) and all(isinstance(i, str) for i in ids)):
            raise Unproven("a reservation record of the wrong shape")
        state.reserve(ref, amount, tuple(ids))  # type: ignore[arg-type]
    elif kind == "s" and len(record) == 3:
        ref, actual = record[1:]
        if not (isinstance(ref, int) and isinstance(actual, int)):
            raise Unproven("a settle record of the wrong shape")
        state.settle(ref, actual)
    elif kind == "d" and len(record) == 2 and isinstance(record[1], str):
        state.done(record[1])
    else:
        raise Unproven(f"an unknown record {kind!r}")


def written(data: bytes) -> bytes:
    """The complete records of a journal file: up to its first zero byte (the file is zeros past its
    records), less a last record without its line end (torn by a kill in the middle of its copy)."""
    end = data.find(b"\0")
    if end >= 0:
        data = data[:end]
    return data[: data.rfind(b"\n") + 1]


def fold(lines: Iterable[bytes], boot_id: str) -> JournalState:
    """The state a journal's lines add up to; raises ``Unproven`` when they cannot vouch for it."""
    state = JournalState()
    first = True
    for line in lines:
        if not line.strip():
            continue
        try:
            record = msgspec.json.decode(line, type=list[object])
        except msgspec.DecodeError as exc:
            raise Unproven("a line that does not parse") from exc
        if not record:
            raise Unproven("an empty record")
        if first:
            if record != ["h", boot_id]:
                raise Unproven("written in another boot (records may have been lost with the page cache)")
            first = False
            continue
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
