"""Upstream health: a circuit breaker per (connection, model) and a bad-key bench per connection.

A mutable book built at startup and passed down (no module state). Pure otherwise: the caller
passes ``now`` from a monotonic clock, in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .outcome import FailureClass

BreakerState = Literal["closed", "open", "half_open"]
Key = tuple[str, str]


@dataclass(slots=True)
class _Breaker:
    failures: int = 0  # consecutive failures while closed
    open_until: float | None = None  # set while open or half-open
    level: int = 0  # failed probes since the breaker last closed (cool-down doubles each time)
    probe_since: float | None = None  # a half-open probe is in flight since then
    last_connect: float | None = None  # when a connect failure last counted


class HealthBook:
    """Which candidates may be tried now.

    Closed → open after ``failure_threshold`` consecutive failures (cool-down ``base_cooldown``),
    or at once on a 429/529 carrying Retry-After (cool-down: that long). Open → half-open when the
    cool-down ends; half-open admits one probe (claimed with ``acquire``): success closes, failure
    re-opens with the cool-down doubled, up to ``max_cooldown``. Connect and DNS errors count at
    most once per ``connect_count_interval`` seconds, so one network blip hitting many concurrent
    requests is one failure, not many (fault 10). A 401/403 benches the connection's key for
    ``key_bad_cooldown`` seconds: none of its models is usable meanwhile.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        base_cooldown: float = 30.0,
        max_cooldown: float = 300.0,
        key_bad_cooldown: float = 300.0,
        connect_count_interval: float = 1.0,
        probe_timeout: float = 60.0,
    ) -> None:
        self.failure_threshold = max(failure_threshold, 1)
        self.base_cooldown = base_cooldown
        self.max_cooldown = max_cooldown
        self.key_bad_cooldown = key_bad_cooldown
        self.connect_count_interval = connect_count_interval
        self.probe_timeout = probe_timeout
        self._breakers: dict[Key, _Breaker] = {}
        self._key_bad_until: dict[str, float] = {}

    # -- queries ------------------------------------------------------------------------------

    def state(self, conn: str, model: str, now: float) -> BreakerState:
        breaker = self._breakers.get((conn, model))
        if breaker is None or breaker.open_until is None:
            return "closed"
        return "open" if now < breaker.open_until else "half_open"

    def key_bad(self, conn: str, now: float) -> bool:
        until = self._key_bad_until.get(conn)
        return until is not None and now < until

    def usable(self, conn: str, model: str, now: float) -> bool:
        """May this candidate be tried now? (Half-open: only while no probe is in flight.)"""
        if self.key_bad(conn, now):
            return False
        breaker = self._breakers.get((conn, model))
        if breaker is None or breaker.open_until is None:
            return True
        if now < breaker.open_until:
            return False
        return not self._probe_in_flight(breaker, now)

    def _probe_in_flight(self, breaker: _Breaker, now: float) -> bool:
        return breaker.probe_since is not None and now - breaker.probe_since < self.probe_timeout

    # -- updates ------------------------------------------------------------------------------

    def acquire(self, conn: str, model: str, now: float) -> bool:
        """Claim the right to send one attempt now. False when unusable or another probe holds it.

        Closed: always true. Half-open: the first caller gets the probe; a probe whose outcome is
        never recorded frees itself after ``probe_timeout``.
        """
        if not self.usable(conn, model, now):
            return False
        breaker = self._breakers.get((conn, model))
        if breaker is not None and breaker.open_until is not None:
            breaker.probe_since = now
        return True

    def release(self, conn: str, model: str) -> None:
        """Give back a claimed probe without an outcome (the client went away first)."""
        breaker = self._breakers.get((conn, model))
        if breaker is not None:
            breaker.probe_since = None

    def record_success(self, conn: str, model: str) -> None:
        self._breakers.pop((conn, model), None)

    def record_failure(
        self,
        conn: str,
        model: str,
        failure: FailureClass,
        now: float,
        retry_after: float | None = None,
    ) -> None:
        """Count a failed attempt. "auth" benches the key; "request" (the client's fault) is neutral."""
        if failure == "auth":
            self.mark_key_bad(conn, now)
            self.release(conn, model)
            return
        if failure == "request":
            self.release(conn, model)
            return
        breaker = self._breakers.setdefault((conn, model), _Breaker())
        breaker.probe_since = None
        if failure == "429" and retry_after is not None and retry_after > 0:
            until = now + retry_after
            breaker.open_until = until if breaker.open_until is None else max(breaker.open_until, until)
            breaker.failures = 0
            return
        if breaker.open_until is not None:
            if now >= breaker.open_until:  # the half-open probe failed
                breaker.level += 1
                breaker.open_until = now + self._cooldown(breaker.level)
            return  # failures of attempts that started before the breaker opened change nothing
        if failure == "connect":
            if breaker.last_connect is not None and now - breaker.last_connect < self.connect_count_interval:
                return
            breaker.last_connect = now
        breaker.failures += 1
        if breaker.failures >= self.failure_threshold:
            breaker.failures = 0
            breaker.open_until = now + self._cooldown(breaker.level)

    def mark_key_bad(self, conn: str, now: float) -> None:
        self._key_bad_until[conn] = now + self.key_bad_cooldown

    def clear_key_bad(self, conn: str) -> None:
        """Forget a bench, e.g. when a new config brings a new key for the connection."""
        self._key_bad_until.pop(conn, None)

    def _cooldown(self, level: int) -> float:
        return min(self.base_cooldown * 2.0 ** min(level, 32), self.max_cooldown)
