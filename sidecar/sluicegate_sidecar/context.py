"""A client request's state: one home for what the pipeline learns about it as it goes.

Written by the pipeline and its attempts, read by accounting for the ledger line and the request log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sluicegate_contract.ladder import Verdict
from sluicegate_contract.ledger import Entry

from .attribution import Attribution
from .providers.base import Usage
from .routing.catalog import Target
from .routing.resolve import ResolutionKind


@dataclass(slots=True)
class RequestContext:
    """Mutable facts about one client request, gathered as it goes through the pipeline."""

    request_id: str
    op: str
    requested_model: str
    attribution: Attribution
    started: float = field(default_factory=time.perf_counter)
    wall: datetime = field(default_factory=lambda: datetime.now(UTC))
    tier: str | None = None
    action: Verdict = "allow"  # what the budgets did to this request
    shadow_action: Verdict | None = None  # what a Shadow policy would have done, when stricter
    resolved: ResolutionKind | None = None  # how the model name resolved: auto, tier or pinned
    routed: Target | None = None
    fallbacks: list[str] = field(default_factory=list)
    upstream_seconds: float = 0.0
    cost_micro_usd: int = 0
    basis: str | None = None
    usage: Usage | None = None
    status: int | str = 200
    auto_reason: str | None = None
    verdict_policy: str | None = None
    ledger_writes: list[asyncio.Future[Entry]] = field(default_factory=list)
    admission_deadline: float | None = None  # monotonic; set when it first waits for budget room
    client_headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased names, for adapters

    @property
    def verdict(self) -> str:
        """For ``X-Sluicegate-Verdict``, metrics and the log: ``BLOCK`` or ``allow; shadow=BLOCK``."""
        return self.action if self.shadow_action is None else f"{self.action}; shadow={self.shadow_action}"
