"""The SIGTERM drain: new requests are refused, streams in flight run until a deadline, then are cut.

One ``Drain`` per sidecar, built at startup; the streams register their waits with it so the
deadline can end them early.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .deadlines import Deadline


@dataclass
class Drain:
    draining: bool = False
    inflight: int = 0  # streams being relayed
    deadline: float | None = None  # loop time at which open streams are cut
    _stream_timers: set[Deadline] = field(default_factory=set)

    def start(self, deadline: float) -> None:
        """Refuse new requests; streams in flight get until ``deadline`` (loop time), then are cut."""
        self.draining, self.deadline = True, deadline
        for timer in self._stream_timers:
            self._bring_forward(timer)

    def track_stream_timer(self, timer: Deadline) -> None:
        """Register a stream's wait for its next chunk, so the drain deadline can end it early."""
        self._stream_timers.add(timer)
        self._bring_forward(timer)

    def untrack_stream_timer(self, timer: Deadline) -> None:
        self._stream_timers.discard(timer)

    def _bring_forward(self, timer: Deadline) -> None:
        when = timer.when()
        if self.deadline is not None and (when is None or when > self.deadline):
            timer.reschedule(self.deadline)

    def expired(self) -> bool:
        """True once the drain deadline has passed (a stream's timeout then means: cut for shutdown)."""
        deadline = self.deadline
        return deadline is not None and asyncio.get_running_loop().time() >= deadline - 0.05
