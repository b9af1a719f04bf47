"""The grants an ask gets without a lease: the lease unknown here (``gone``), or none (``refused``). Pure."""

from __future__ import annotations

from datetime import datetime

from sluicegate_contract.authority import LeaseAsk, LeaseGrant, Refusal
from sluicegate_contract.timestamps import format_time


def gone(ask: LeaseAsk, now: datetime) -> LeaseGrant:
    """A lease this store does not know for that sidecar and scope: the sidecar drops it."""
    stamp = format_time(now)
    return LeaseGrant(
        scope=ask.scope,
        lease_id=ask.lease_id,
        state="closed",
        amount_micro_usd=0,
        settled_micro_usd=ask.settled_micro_usd,
        ttl_ms=0,
        window_start=stamp,
        window_end=stamp,
    )


def refused(ask: LeaseAsk, now: datetime, refusal: Refusal) -> LeaseGrant:
    stamp = format_time(now)
    return LeaseGrant(
        scope=ask.scope,
        lease_id=None,
        state="closed",
        amount_micro_usd=0,
        settled_micro_usd=0,
        ttl_ms=0,
        window_start=stamp,
        window_end=stamp,
        refusal=refusal,
    )
