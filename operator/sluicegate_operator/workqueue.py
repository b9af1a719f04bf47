"""Which namespace to reconcile next: a tenant's change before background waves, waves rate-limited.

A namespace is queued at most once; a namespace being reconciled is held back until it is done, so it
is never reconciled twice at once. Pure: no asyncio, no I/O; the time is an argument.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field

URGENT, BACKGROUND = 0, 1
MAX_CAUSES = 64  # beyond that a namespace is reconciled without checking where its events came from

Cause = Hashable  # what an event was about (an object and its resourceVersion); see WriteLog


@dataclass(slots=True)
class _Entry:
    priority: int
    seq: int
    causes: set[Cause] | None  # None: reconcile whatever caused it


@dataclass(frozen=True, slots=True)
class Work:
    namespace: str
    urgent: bool
    causes: frozenset[Cause] | None  # None: reconcile; else only if one cause is not the operator's own


def _merge(a: set[Cause] | None, b: Cause | None) -> set[Cause] | None:
    if a is None or b is None:
        return None
    a.add(b)
    return None if len(a) > MAX_CAUSES else a


@dataclass(slots=True)
class WorkQueue:
    """Urgent work first (FIFO), then background work at ``wave_rate`` namespaces per second."""

    wave_rate: float
    wave_burst: float = 5.0
    _heap: list[tuple[int, int, str]] = field(default_factory=list)
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _held: dict[str, _Entry] = field(default_factory=dict)  # queued while being reconciled
    _busy: set[str] = field(default_factory=set)
    _seq: int = 0
    _tokens: float = 0.0
    _refilled: float | None = None

    def __len__(self) -> int:
        return len(self._entries) + len(self._held)

    def add(self, namespace: str, *, urgent: bool, cause: Cause | None = None) -> None:
        priority = URGENT if urgent else BACKGROUND
        pending = self._held if namespace in self._busy else self._entries
        entry = pending.get(namespace)
        if entry is None:
            self._seq += 1
            entry = _Entry(priority, self._seq, None if cause is None else {cause})
            pending[namespace] = entry
        else:
            entry.causes = _merge(entry.causes, cause)
            if priority >= entry.priority:
                return
            self._seq += 1
            entry.priority, entry.seq = priority, self._seq
        if pending is self._entries:
            heapq.heappush(self._heap, (entry.priority, entry.seq, namespace))

    def pop(self, now: float) -> Work | float | None:
        """The next work, else seconds until background work may go, else None (nothing queued)."""
        while self._heap:
            priority, seq, namespace = self._heap[0]
            entry = self._entries.get(namespace)
            if entry is None or entry.seq != seq:
                heapq.heappop(self._heap)  # superseded
                continue
            if priority == BACKGROUND:
                self._refill(now)
                if self._tokens < 1.0:
                    return (1.0 - self._tokens) / self.wave_rate
                self._tokens -= 1.0
            heapq.heappop(self._heap)
            del self._entries[namespace]
            self._busy.add(namespace)
            causes = None if entry.causes is None else frozenset(entry.causes)
            return Work(namespace, priority == URGENT, causes)
        return None

    def done(self, namespace: str) -> None:
        """The namespace's reconcile finished: what arrived meanwhile is queued now."""
        self._busy.discard(namespace)
        entry = self._held.pop(namespace, None)
        if entry is not None:
            self._entries[namespace] = entry
            heapq.heappush(self._heap, (entry.priority, entry.seq, namespace))

    def _refill(self, now: float) -> None:
        if self._refilled is None:
            self._refilled, self._tokens = now, self.wave_burst
        elapsed = max(0.0, now - self._refilled)
        self._tokens = min(self.wave_burst, self._tokens + elapsed * self.wave_rate)
        self._refilled = now


def jittered(seconds: float, unit: float, spread: float = 0.2) -> float:
    """``seconds`` shortened by up to ``spread`` of itself; ``unit`` is a random number in [0, 1)."""
    return seconds * (1.0 - spread * unit)
