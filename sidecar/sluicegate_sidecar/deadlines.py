"""Deadlines on one shared timer per event loop, not a loop timer each.

``asyncio.timeout`` arms a loop timer on entry and again on every ``reschedule``, and cancels it on
exit: for a complete reply that was a timer set, moved and cancelled per request, for a stream one per
chunk. Measured in paired runs (``bench/ab_pair.sh``), the upstream deadline alone cost 5-6 % of the
sidecar's CPU per request at c=32. Here a deadline is an entry in its loop's set, which one timer
scans every ``TICK`` seconds while the set is not empty: a deadline fires within ``TICK`` after its
time (the sidecar's deadlines are seconds long).

Semantics as ``asyncio.timeout``: when it fires the task is cancelled, and the ``CancelledError`` that
cancellation caused leaves the block as ``TimeoutError``; a cancellation from elsewhere (a client
that went away) stays a cancellation. ``when`` and ``reschedule`` as ``asyncio.Timeout``'s.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

TICK = 0.05  # seconds between scans of a loop's deadlines (while it has any)


class _Clock:
    """A loop's deadlines and the one timer that scans them."""

    __slots__ = ("_handle", "due", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: set[Deadline] = set()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, deadline: Deadline) -> None:
        self.due.add(deadline)
        if self._handle is None:
            self._handle = self.loop.call_at(self.loop.time() + TICK, self._scan)

    def _scan(self) -> None:
        now = self.loop.time()
        for deadline in [d for d in self.due if d._when is not None and d._when <= now]:
            self.due.discard(deadline)
            deadline._expire()
        self._handle = self.loop.call_at(now + TICK, self._scan) if self.due else None


_clock: _Clock | None = None  # the running loop's (the sidecar runs one loop)


def _clock_of(loop: asyncio.AbstractEventLoop) -> _Clock:
    global _clock
    clock = _clock
    if clock is None or clock.loop is not loop:  # another loop (tests run many, one at a time)
        clock = _clock = _Clock(loop)
    return clock


class Deadline:
    """``with Deadline(seconds):`` — the block is cancelled ``seconds`` from now (``TimeoutError``)."""

    __slots__ = ("_cancelling", "_clock", "_done", "_task", "_when", "expired")

    def __init__(self, seconds: float | None) -> None:
        self._when = seconds  # relative until entered
        self.expired = False
        self._done = False  # the block was left: nothing may fire it any more

    def __enter__(self) -> Deadline:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._clock = _clock_of(loop)
        if self._when is not None:
            self._when += loop.time()
            self._clock.add(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done = True
        self._clock.due.discard(self)
        if self.expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def when(self) -> float | None:
        """The loop time at which it fires (None: never)."""
        return self._when

    def reschedule(self, when: float | None) -> None:
        """Fire at loop time ``when`` instead (None: never); only inside the block, before it fired."""
        if self.expired or self._done:
            return
        self._when = when
        if when is None:
            self._clock.due.discard(self)
        else:
            self._clock.add(self)

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()
