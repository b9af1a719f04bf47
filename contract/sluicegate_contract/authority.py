"""The budget authority's wire messages: what a sidecar sends to sync its leases, and the reply.

One exchange (``POST /v1/leases/sync``) does everything a sidecar needs per refresh: it reports the
cumulative settled spend of each lease it holds (idempotent), states the most it still counts on
(``limit``: the authority may lower the lease to it, never below what was reported), asks for more
(``want``, at least ``least``) and returns a lease for good (``final``). Every field is absolute or
a request, never a delta, so a retried or replayed sync changes nothing it should not. A lease the
sidecar opened itself (``offline``: ``failMode: static`` while the authority was unreachable) is
reported the same way, under the id the sidecar gave it; the authority records its spend.
"""

from __future__ import annotations

from typing import Literal

import msgspec

SYNC_PATH = "/v1/leases/sync"
STATUS_PATH = "/v1/accounts"
WindowKind = Literal["day", "week", "month"]
# Why the authority granted nothing: the kill switch is on, the policy is at (or over) its cap,
# the policy is unknown in the authority's config, or the lease's window has closed.
Refusal = Literal["kill_switch", "budget_exceeded", "unknown_policy", "window_closed"]
LeaseState = Literal["open", "closed", "expired", "reconciled"]


class _Msg(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """Base for the authority's messages: immutable, strict, camelCase on the wire."""


class ScopeRef(_Msg, frozen=True, kw_only=True):
    """A budget scope as the sidecar names it; the authority picks the window holding its own now."""

    policy: str
    split: str = ""
    window: WindowKind


class LeaseAsk(_Msg, frozen=True, kw_only=True, omit_defaults=True):
    """One scope's part of a sync. ``lease_id`` None asks for a new lease. Defaults are left off the
    wire, so an ask without ``offline`` reads the same to an authority that predates it."""

    scope: ScopeRef
    lease_id: str | None = None
    settled_micro_usd: int = 0  # cumulative settled spend on this lease, from the sidecar's ledger
    limit_micro_usd: int | None = None  # the lease amount the sidecar counts on (lower to it)
    want_micro_usd: int = 0  # more to add to the lease ...
    least_micro_usd: int = 0  # ... but nothing unless at least this much fits
    final: bool = False  # nothing more will be reserved on this lease: close it, return the rest
    # The sidecar opened this lease itself under failMode static while no authority answered (its
    # ``lease_id`` is the sidecar's own): it holds nothing, its reports are spend to record.
    offline: bool = False


class SyncRequest(_Msg, frozen=True, kw_only=True):
    namespace: str
    sidecar_id: str  # stable across restarts on the same volume
    asks: tuple[LeaseAsk, ...] = ()
    # New at each start of the sidecar process: an open lease granted to this same process whose
    # reply it never got (the replica died before answering, or it retried at another) is handed to
    # its next ask for a new lease instead of a second one (``authority.store``). None: never.
    process_id: str | None = None
    # Ledger entries riding along with the settlement they explain: the sidecar's own JSONL lines,
    # byte for byte as chained, in sequence order from just after its acknowledged watermark. The
    # stream is ``sidecar_id``; each entry carries its ``seq`` (``ledgerrow.ShippedEntry``).
    entries: tuple[msgspec.Raw, ...] = ()


class AccountView(_Msg, frozen=True, kw_only=True):
    """An account as the authority saw it when it replied."""

    cap_micro_usd: int
    settled_micro_usd: int
    leased_micro_usd: int
    holders: int  # sidecars holding an open lease on it

    @property
    def remaining_micro_usd(self) -> int:
        return max(0, self.cap_micro_usd - self.settled_micro_usd - self.leased_micro_usd)


class LeaseGrant(_Msg, frozen=True, kw_only=True):
    """A lease after the sync: its whole amount (not the increase) and how long it stays valid.

    ``ttl_ms`` counts from when the sidecar receives the reply (it measures it on its monotonic
    clock, less a skew margin); ``lease_id`` None with a ``refusal`` means no lease was opened.
    """

    scope: ScopeRef
    lease_id: str | None
    state: LeaseState
    amount_micro_usd: int
    settled_micro_usd: int  # as the authority has recorded it
    ttl_ms: int
    window_start: str  # ISO 8601 UTC, computed by the authority
    window_end: str
    account: AccountView | None = None
    refusal: Refusal | None = None


class SyncReply(_Msg, frozen=True, kw_only=True):
    leases: tuple[LeaseGrant, ...] = ()
    entries_accepted: int = 0  # how many riding ledger entries were new to the database
    # The highest seq of the sidecar's stream such that every entry 1..seq is in the database (the
    # sidecar may forget entries up to it); None when the sync carried no entries.
    ledger_acked_seq: int | None = None


class AccountStatus(_Msg, frozen=True, kw_only=True):
    """One account, for BudgetPolicy status and ``GET /v1/accounts?namespace=``."""

    namespace: str
    policy: str
    split: str
    window: WindowKind
    window_start: str
    window_end: str
    cap_micro_usd: int
    settled_micro_usd: int
    leased_micro_usd: int
    holders: int


class AccountsReply(_Msg, frozen=True, kw_only=True):
    accounts: tuple[AccountStatus, ...] = ()


class AuthorityError(_Msg, frozen=True, kw_only=True):
    """An error reply (4xx/5xx) from the authority."""

    error: str
    message: str
