"""Savings over the fleet ledger in PostgreSQL: what to ask SQL, and the report from its answer. Pure.

A million entries hold few distinct (requested model, connection, provider, model, tier, resolution)
*combos*.
Each combo's asked-for and premium models are decided here once, with the same rules as
``savings.analyze_savings``; the database then prices every row with those models' rates from the
price book the configs carried (``ledger_prices``: no catalog call per row), the price in force at
the row's time (a config's prices from when the authority recorded its serial; a row older than
every recorded price takes the first), and sums per window and group. ``report`` turns the sums into
the same ``SavingsReport`` the files give.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from sluicegate_contract.bookprice import tokens_cost_micro_usd
from sluicegate_contract.ledger import EntryResolution, EntryUsage
from sluicegate_contract.schema import ModelPrice

from .savings import (
    LeftOut,
    ModelRef,
    Pricer,
    SavingsReport,
    SavingsRow,
    ask_for,
    most_expensive_of,
)

OWN_COST = -1  # price id meaning: the model that served, at what the ledger charged
_SEP, _NULL = "\x1f", "\x1e"


def combo_key(*parts: str | None) -> str:
    """The key SQL builds for a row: ``concat_ws(chr(31), coalesce(col, chr(30)), ...)``."""
    return _SEP.join(_NULL if part is None else part for part in parts)


@dataclass(frozen=True, slots=True)
class Combo:
    requested_model: str
    connection: str | None
    provider: str | None
    model: str | None
    tier: str | None
    resolution_kind: str | None  # version 2: how the requested model resolved (None on version 1)
    resolution_tier: str | None
    latest: datetime  # the last time a row of this combo was settled

    @property
    def key(self) -> str:
        return combo_key(
            self.requested_model,
            self.connection,
            self.provider,
            self.model,
            self.tier,
            self.resolution_kind,
            self.resolution_tier,
        )

    @property
    def resolution(self) -> EntryResolution | None:
        if self.resolution_kind is None:
            return None
        return msgspec.convert({"kind": self.resolution_kind, "tier": self.resolution_tier}, EntryResolution)


@dataclass(frozen=True, slots=True)
class ComboPlan:
    key: str
    asked: int  # price id, or OWN_COST; ignored when ``reason`` is set
    premium: int
    reason: str | None  # why this combo's rows are left out of the comparison
    auto: bool = False  # the request asked for ``auto``


# (price id, in force from (None: since ever), until (None: still), above input tokens, input, output,
# cached, write)
Rate = tuple[int, datetime | None, datetime | None, int, int, int, int, int]
# A model's prices over time: (since when, the price), oldest first.
PriceHistory = Sequence[tuple[datetime, ModelPrice]]
PriceBook = Mapping[ModelRef, PriceHistory]


def in_force(history: PriceHistory, when: datetime) -> ModelPrice:
    """The price recorded last at or before ``when``; before the first one, the first one."""
    index = bisect_right([since for since, _ in history], when)
    return history[max(index - 1, 0)][1]


def book_pricer(book: PriceBook) -> Pricer:
    """A ``savings.Pricer`` over the configs' price books: the price in force at the entry's time."""

    def price(ref: ModelRef, usage: EntryUsage, when: datetime) -> int | None:
        history = book.get(ref)
        if not history:
            return None
        found = in_force(history, when)
        return tokens_cost_micro_usd(found, usage.input, usage.output, usage.cached, usage.cache_write)

    return price


@dataclass(frozen=True, slots=True)
class Plan:
    combos: tuple[ComboPlan, ...]
    rates: tuple[Rate, ...]
    baseline: ModelRef | None
    baseline_source: str


def kinds_and_served(combos: Sequence[Combo]) -> tuple[dict[str, str], dict[str, str]]:
    """Connection → provider kind and served model → provider kind, as ``savings`` reads the ledger."""
    kinds: dict[str, str] = {}
    served: dict[str, str] = {}
    for combo in sorted(combos, key=lambda c: c.latest):
        if combo.connection and combo.provider:
            kinds.setdefault(combo.connection, combo.provider)
        if combo.model and combo.provider:
            served.setdefault(combo.model, combo.provider)
    return kinds, served


def plan(
    combos: Sequence[Combo],
    book: PriceBook,
    *,
    baseline: ModelRef | None,
    tier_models: Mapping[str, ModelRef],
) -> Plan:
    pricer = book_pricer(book)
    source = "--baseline"
    if baseline is None:
        latest: dict[ModelRef, datetime] = {}
        for combo in combos:
            if combo.model and combo.provider:
                ref = ModelRef(combo.provider, combo.model)
                latest[ref] = max(latest.get(ref, combo.latest), combo.latest)
        baseline = most_expensive_of(latest, pricer)
        source = "the most expensive model served in the ledger"
    kinds, served = kinds_and_served(combos)
    tiers = frozenset(c.tier for c in combos if c.tier)
    ids: dict[ModelRef, int] = {}

    def price_id(ref: ModelRef, combo: Combo) -> int | None:
        if combo.provider == ref.provider and combo.model == ref.model:
            return OWN_COST
        if ref not in book:
            return None
        return ids.setdefault(ref, len(ids))

    plans: list[ComboPlan] = []
    for combo in combos:
        ask = ask_for(combo.requested_model, combo.resolution, combo.provider, kinds, served, tiers)
        asked_ref = ask.pinned or (tier_models.get(ask.tier) if ask.tier else None) or baseline
        if asked_ref is None:
            plans.append(ComboPlan(combo.key, 0, 0, "no baseline model to compare with", ask.auto))
            continue
        asked = price_id(asked_ref, combo)
        if asked is None and ask.pinned is not None:
            asked = OWN_COST  # an alias: a pinned request is served by the very model it names
        premium = price_id(baseline, combo) if baseline is not None else asked
        if asked is None or premium is None:
            missing = asked_ref if asked is None else baseline
            plans.append(ComboPlan(combo.key, 0, 0, f"no catalog price for {missing}", ask.auto))
            continue
        plans.append(ComboPlan(combo.key, asked, premium, None, ask.auto))
    rates: list[Rate] = []
    for ref, number in ids.items():
        history = book[ref]
        for version, (since, price) in enumerate(history):
            start = since if version else None
            end = history[version + 1][0] if version + 1 < len(history) else None
            tiers_up = sorted(((t.above_input_tokens, t.rates) for t in price.tiers), key=lambda s: s[0])
            for above, r in [(-1, price.base), *tiers_up]:
                cached = r.input_per_mtok if r.cached_input_per_mtok is None else r.cached_input_per_mtok
                write = r.input_per_mtok if r.cache_write_per_mtok is None else r.cache_write_per_mtok
                rates.append((number, start, end, above, r.input_per_mtok, r.output_per_mtok, cached, write))
    return Plan(tuple(plans), tuple(rates), baseline, source)


def report(
    groups: Sequence[SavingsRow], left_out: Sequence[LeftOut], *, by: str, window: str, found: Plan
) -> SavingsReport:
    """The report from SQL's per (window, group) sums, ordered as ``analyze_savings`` orders it."""
    total = SavingsRow("ALL", "TOTAL")
    for row in groups:
        values = {name: getattr(total, name) + getattr(row, name) for name in _SUMMED}
        total = SavingsRow("ALL", "TOTAL", **values)
    rows = tuple(sorted(groups, key=lambda r: (r.window, -r.saved_micro_usd, r.group)))
    return SavingsReport(by, window, found.baseline, found.baseline_source, rows, total, tuple(left_out))


_SUMMED = (
    "requests", "compared", "downgraded", "light_only", "auto", "actual_micro_usd", "asked_micro_usd",
    "premium_micro_usd", "estimated", "estimated_micro_usd", "unpriced", "unpriced_micro_usd",
)  # fmt: skip
