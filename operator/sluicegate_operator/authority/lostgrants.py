"""A lease granted to a sync whose reply never reached the sidecar process, found again for it.

The authority commits a grant, then answers; the replica may die in between, or the process may time
out and retry the same sync at another replica. Without this the retry opens a second lease and the
first, which nobody knows, stays charged in full at its expiry, for good. ``unreported`` finds it so
the process's ask for a new lease takes it over (``store``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class Sender:
    sidecar_id: str
    process_id: str | None
    named: list[uuid.UUID]  # the leases its sync reports


async def unreported(conn: psycopg.AsyncConnection[Any], key: tuple[Any, ...], sender: Sender) -> str | None:
    """An open lease of this very process on this account that its sync does not report: granted to
    an earlier sync of it whose reply never arrived (the replica that answered died before the reply
    left, or it timed out and the process retried at another replica). A process reports every lease
    it knows at every sync and reserves on none it does not know, so its ask for a new lease takes
    that one over instead of opening a second: the first would stay charged in full at its expiry,
    for good (nobody could report it). Another process of the same sidecar (a restart) never gets
    it: the one before may have spent on it; its journal reports it, or it stays charged in full."""
    cur = await conn.execute(
        "SELECT lease_id FROM budget_leases WHERE namespace = %s AND policy = %s AND split = %s"
        " AND window_kind = %s AND window_start = %s AND sidecar_id = %s AND process_id = %s"
        " AND state = 'open' AND NOT (lease_id = ANY(%s)) ORDER BY created_at LIMIT 1",
        (*key, sender.sidecar_id, sender.process_id, sender.named),
    )
    row = await cur.fetchone()
    return str(row[0]) if row is not None else None
