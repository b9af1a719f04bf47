"""Whether this replica is the active one under kopf's peering, so background loops stand by with it.

kopf pauses a replica's watches while another live peer has a higher priority, or the same one (then all
of them pause), but it offers no flag for that to the operator's own loops. ``PeeringGate`` reads the
peering object every few seconds and applies kopf's rule (``leads``) to the status kopf keeps there:
``{identity: {priority, lifetime, lastseen}}``. The rule is pure; the gate takes the reader and the clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

logger = logging.getLogger(__name__)


def _lastseen(value: object, now: datetime) -> datetime | None:
    if value is None:
        return now  # kopf counts a peer without lastseen as seen now
    if not isinstance(value, str):
        return None
    try:
        seen = datetime.fromisoformat(value)
    except ValueError:
        return None
    return seen if seen.tzinfo is not None else seen.replace(tzinfo=UTC)


def leads(status: Mapping[str, Any] | None, identity: str, priority: int, now: datetime) -> bool:
    """False while another live peer has this priority or a higher one (kopf pauses this replica)."""
    for peer, info in (status or {}).items():
        if peer == identity or not isinstance(info, Mapping):
            continue
        seen = _lastseen(info.get("lastseen"), now)
        try:
            their_priority = int(info.get("priority", 0))
            lifetime = timedelta(seconds=int(info.get("lifetime", 60)))
        except (TypeError, ValueError):
            continue
        if seen is None or seen + lifetime <= now:
            continue  # dead: kopf ignores it (and cleans it up)
        if their_priority >= priority:
            return False
    return True


class PeeringGate:
    """``await gate.active()``: this replica leads; the peering object is read at most once per ``ttl``.

    No peering object (kopf then runs without peering) means active; a failed read keeps the last answer.
    """

    def __init__(
        self,
        read: Callable[[], Awaitable[Mapping[str, Any] | None]],
        identity: str,
        priority: int,
        *,
        ttl: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read, self.identity, self.priority, self._ttl = read, identity, priority, ttl
        self._clock, self._monotonic = clock, monotonic
        self._answer = True
        self._checked: float | None = None

    async def active(self) -> bool:
        now = self._monotonic()
        if self._checked is not None and now - self._checked < self._ttl:
            return self._answer
        self._checked = now
        try:
            peering = await self._read()
        except Exception as exc:  # the API is away: keep the last answer
            logger.warning("could not read the peering object: %s", exc)
            return self._answer
        status = None if peering is None else peering.get("status")
        answer = leads(
            status if isinstance(status, Mapping) else None, self.identity, self.priority, self._clock()
        )
        if answer != self._answer:
            logger.info("this replica is %s", "active again" if answer else "standing by (kopf peering)")
        self._answer = answer
        return answer
