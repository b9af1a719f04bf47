"""Lease arithmetic of the budget authority: what a lease adds to its account's settled and leased.

Pure: no I/O, no clock. The authority's store applies these transitions inside one transaction per
account (row locks), so ``settled + leased ≤ cap`` holds across any number of authority replicas,
short of price-catalog error (a lease reported above its amount).

A lease contributes to its account:
- ``open``: its reported spend to settled, the rest of its amount to leased;
- ``closed`` (returned by a final report): its reported spend only;
- ``expired`` (not renewed in time; its sidecar presumably died): its whole amount, charged as spent;
- ``reconciled`` (expired, then a final report from the sidecar's ledger): its reported spend only.

A lease a sidecar opened itself while the authority was unreachable (``failMode: static``) reaches the
authority afterwards as ``closed`` with its report: spend beyond the cap by design, recorded so that the
accounts equal the ledgers (``offline``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .authority import LeaseState
from .ladder import cap_of
from .schema import Budget, Limit


def scope_cap(budget: Budget, limit: Limit) -> int:
    """The limit, lowered by any ladder step that BLOCKs before 100 % (the sidecar and the authority
    hold a scope to the same cap; the rule is ``ladder.cap_of``)."""
    return cap_of(limit.amount_micro_usd, ((step.at_ppm, step.action) for step in budget.ladder))


@dataclass(frozen=True, slots=True)
class Lease:
    amount: int  # micro-USD granted, in total
    reported: int = 0  # cumulative settled spend the sidecar reported (the largest seen)
    state: LeaseState = "open"


@dataclass(frozen=True, slots=True)
class Account:
    cap: int
    settled: int = 0
    leased: int = 0

    @property
    def remaining(self) -> int:
        return max(0, self.cap - self.settled - self.leased)


def contribution(lease: Lease) -> tuple[int, int]:
    """(settled, leased) that ``lease`` adds to its account."""
    if lease.state == "open":
        return lease.reported, max(0, lease.amount - lease.reported)
    if lease.state == "expired":
        return max(lease.amount, lease.reported), 0
    return lease.reported, 0


def moved(account: Account, before: Lease | None, after: Lease) -> Account:
    """``account`` once ``before`` (None: a new lease) became ``after``."""
    old_settled, old_leased = contribution(before) if before is not None else (0, 0)
    new_settled, new_leased = contribution(after)
    return replace(
        account,
        settled=account.settled + new_settled - old_settled,
        leased=account.leased + new_leased - old_leased,
    )


def grantable(account: Account, want: int, least: int, *, allowed: bool = True) -> int:
    """How much of ``want`` to add to a lease: all that fits, or 0 when less than ``least`` fits."""
    if not allowed or want <= 0:
        return 0
    amount = min(want, account.remaining)
    return amount if amount >= max(least, 1) else 0


def reported(lease: Lease, settled: int, limit: int | None, final: bool) -> Lease:
    """``lease`` after a report of cumulative ``settled`` spend (idempotent: the largest report wins).

    On an open lease the amount may be lowered to ``limit`` (never below what was reported), and a
    final report closes it. On an expired lease only a final report (the sidecar has nothing in
    flight on it any more) corrects the full charge down to what it reported.
    """
    if settled < 0:
        raise ValueError("a settled amount cannot be negative")
    spent = max(lease.reported, settled)
    if lease.state == "open":
        amount = lease.amount if limit is None else min(lease.amount, max(limit, spent, 0))
        return Lease(amount, spent, "closed" if final else "open")
    if lease.state == "expired" and final:
        return Lease(lease.amount, spent, "reconciled")
    return Lease(lease.amount, spent, lease.state)


def grown(lease: Lease, amount: int) -> Lease:
    """An open lease with ``amount`` more (from ``grantable``)."""
    if lease.state != "open":
        raise ValueError("only an open lease can grow")
    return replace(lease, amount=lease.amount + amount)


def expired(lease: Lease) -> Lease:
    """An open lease whose time ran out: charged in full."""
    return replace(lease, state="expired") if lease.state == "open" else lease


@dataclass(frozen=True, slots=True)
class Synced:
    """The outcome of one ask: the account and lease after it, and how much was added."""

    account: Account
    lease: Lease | None
    granted: int


def synced(
    account: Account,
    lease: Lease | None,
    *,
    settled: int = 0,
    limit: int | None = None,
    want: int = 0,
    least: int = 0,
    final: bool = False,
    allowed: bool = True,
) -> Synced:
    """One ask of a sync applied to an account and its lease (None: the ask opens a new lease).

    ``allowed`` False (kill switch, unknown policy, closed window) grants nothing but still takes
    the report, so spend is never lost.
    """
    if lease is None:
        amount = 0 if final else grantable(account, want, least, allowed=allowed)
        if amount == 0:
            return Synced(account, None, 0)
        new = Lease(amount)
        return Synced(moved(account, None, new), new, amount)
    after = reported(lease, settled, limit, final)
    account = moved(account, lease, after)
    if after.state != "open":
        return Synced(account, after, 0)
    amount = grantable(account, want, least, allowed=allowed)
    if amount == 0:
        return Synced(account, after, 0)
    more = grown(after, amount)
    return Synced(moved(account, after, more), more, amount)


def offline(lease: Lease | None, settled: int, allowance: int = 0) -> Lease:
    """A lease the sidecar opened itself under ``failMode: static`` (None: first seen here) after a
    report of cumulative ``settled``: closed, so its report is all it adds (idempotent, largest wins)."""
    if settled < 0:
        raise ValueError("a settled amount cannot be negative")
    if lease is None:
        return Lease(max(0, allowance), settled, "closed")
    return replace(lease, reported=max(lease.reported, settled))
