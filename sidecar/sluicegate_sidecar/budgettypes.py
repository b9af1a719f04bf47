"""The budget book's values: reservations, refusals, verdicts, scope states and replayed charges.

Pure: values only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import msgspec

from sluicegate_contract.ladder import Verdict, outranks
from sluicegate_contract.windows import WindowKind

from .ladder import ScopeKey

RefusalReason = Literal["kill_switch", "budget_exceeded", "pricing_unknown", "budget_authority_unavailable"]


class Refusal(msgspec.Struct, frozen=True, gc=False):
    """Why a reservation was refused and what the policy does about it.

    ``action`` BLOCK → 402 ``budget_exceeded`` (or ``pricing_unknown``); KILL → 403 ``kill_switch``;
    DOWNGRADE / LIGHT_ONLY → retry once on the lighter tier, then 402.
    """

    action: Verdict
    reason: RefusalReason
    policy: str
    scope: str
    remaining_micro_usd: int
    downgrade_to: str | None = None


class Reservation(msgspec.Struct, frozen=True, gc=False):
    id: int
    keys: tuple[ScopeKey, ...]
    amount_micro_usd: int
    policies: tuple[str, ...]  # every policy charged, Shadow included: the ledger's budgetScopes
    shadow_refusal: Refusal | None = None  # what a Shadow policy would have done (never acted on)
    leases: tuple[str, ...] = ()  # fleet mode: the leases it was reserved on


class Decision(msgspec.Struct, frozen=True, gc=False):
    """The verdict for a request before routing. ``action`` comes from Enforce policies only."""

    action: Verdict
    policy: str | None
    downgrade_to: str | None
    remaining_micro_usd: int | None  # least left over Enforce scopes; None when none applies
    shadow_action: Verdict = "allow"
    shadow_policy: str | None = None

    @property
    def shadow(self) -> bool:
        """True when a Shadow policy would have acted more strictly than what is enforced."""
        return outranks(self.shadow_action, self.action)

    @property
    def label(self) -> str:
        """For ``X-Sluicegate-Verdict`` and the ledger: ``BLOCK`` or ``allow; shadow=BLOCK``."""
        return f"{self.action}; shadow={self.shadow_action}" if self.shadow else self.action


@dataclass(frozen=True, slots=True)
class ScopeStatus:
    """One scope's state, for metrics and BudgetPolicy status."""

    policy: str
    split: str
    window: WindowKind
    mode: str
    limit_micro_usd: int
    spent_micro_usd: int
    reserved_micro_usd: int
    remaining_micro_usd: int
    verdict: Verdict
    window_start: datetime
    window_end: datetime


@dataclass(frozen=True, slots=True)
class Charge:
    """A settled request replayed from the ledger at startup."""

    time: datetime
    policies: tuple[str, ...]
    dimensions: Mapping[str, str]
    cost_micro_usd: int
