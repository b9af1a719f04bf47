"""Savings analysis: what routing saved against the model each app asked for, from ledger entries. Pure.

Prices come from the genai-prices catalog bundled with the package, dated by each request's time
(its background updater is never started); this module reads no files and takes entries as values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, tzinfo
from decimal import ROUND_CEILING, Decimal

from genai_prices import Usage, calc_price

from sluicegate_contract.ledger import Entry, EntryResolution, EntryUsage, parse_time
from sluicegate_contract.modelnames import AUTO, TIER_PREFIX
from sluicegate_contract.money import MICRO_USD
from sluicegate_contract.pricecatalog import CATALOG_PROVIDER
from sluicegate_contract.windows import WindowKind, window_label

GROUPS = ("team", "service", "feature", "namespace", "workload", "model", "provider", "tier")
_REFERENCE_USAGE = EntryUsage(input=100_000, output=100_000)  # below long-context price tiers


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model priced in the catalog: the provider kind (``openai``) and the provider's model name."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


Pricer = Callable[[ModelRef, EntryUsage, datetime], "int | None"]


def catalog_cost(ref: ModelRef, usage: EntryUsage, when: datetime) -> int | None:
    """What ``usage`` cost on ``ref`` at ``when`` in the catalog, in micro-USD rounded up; None if unknown."""
    provider_id = CATALOG_PROVIDER.get(ref.provider)
    if provider_id is None:
        return None
    cached = min(usage.cached, usage.input)
    written = min(usage.cache_write, usage.input - cached)
    try:
        calc = calc_price(
            Usage(
                input_tokens=usage.input,
                cache_read_tokens=cached,
                cache_write_tokens=written,
                output_tokens=usage.output,
            ),
            ref.model,
            provider_id=provider_id,
            genai_request_timestamp=when,
        )
    except (LookupError, ValueError):
        return None
    return int((Decimal(calc.total_price) * MICRO_USD).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True, slots=True)
class Ask:
    """What a request asked for: a pinned model, or a tier (``auto`` has ``tier`` None)."""

    pinned: ModelRef | None
    tier: str | None = None
    auto: bool = False


def connection_kinds(entries: Iterable[Entry]) -> dict[str, str]:
    """Connection name → provider kind, as the ledger recorded them."""
    kinds: dict[str, str] = {}
    for entry in entries:
        if entry.connection and entry.provider:
            kinds.setdefault(entry.connection, entry.provider)
    return kinds


def parse_model_ref(text: str, kinds: dict[str, str], served: dict[str, str]) -> ModelRef | None:
    """``conn/model``, ``provider/model`` or a bare model served in the ledger → a ModelRef, else None."""
    head, slash, tail = text.partition("/")
    if slash and head in kinds:
        return ModelRef(kinds[head], tail)
    if slash and head in CATALOG_PROVIDER:
        return ModelRef(head, tail)
    if text in served:
        return ModelRef(served[text], text)
    return None


def served_models(entries: Iterable[Entry]) -> dict[str, str]:
    """Model name → provider kind for every model that served a request."""
    found: dict[str, str] = {}
    for entry in entries:
        if entry.model and entry.provider:
            found.setdefault(entry.model, entry.provider)
    return found


def ask_of(entry: Entry, kinds: dict[str, str], served: dict[str, str], tiers: frozenset[str]) -> Ask:
    return ask_for(entry.requested_model, entry.resolution, entry.provider, kinds, served, tiers)


def ask_for(
    requested: str,
    resolution: EntryResolution | None,
    provider: str | None,
    kinds: dict[str, str],
    served: dict[str, str],
    tiers: frozenset[str],
) -> Ask:
    """What ``requested`` (resolved as ``resolution``, served by a model of ``provider``) asked for."""
    if resolution is not None and resolution.kind == "auto":  # version 2: the sidecar says how it resolved
        return Ask(None, None, auto=True)
    if resolution is not None and resolution.kind == "tier" and resolution.tier is not None:
        return Ask(None, resolution.tier)
    if requested == AUTO:  # version 1: read the requested model's name
        return Ask(None, None, auto=True)
    if requested.startswith(TIER_PREFIX):
        return Ask(None, requested[len(TIER_PREFIX) :])
    ref = parse_model_ref(requested, kinds, served)
    if ref is None and requested in tiers:
        return Ask(None, requested)  # a bare tier name
    if ref is None and provider:
        ref = ModelRef(provider, requested)  # an alias: pinned requests never change model
    return Ask(ref)


def enforced_verdict(verdict: str) -> str:
    """``DOWNGRADE; shadow=BLOCK`` → ``DOWNGRADE``: the part that was acted on (version-1 entries)."""
    return verdict.split(";", 1)[0].strip()


def enforced_action(entry: Entry) -> str:
    """What the budgets did to the request: the structured decision, or a version-1 entry's verdict."""
    return entry.decision.action if entry.decision is not None else enforced_verdict(entry.verdict)


def most_expensive_model(entries: Sequence[Entry], pricer: Pricer = catalog_cost) -> ModelRef | None:
    """The served model whose catalog price for 100k input + 100k output tokens is highest (ties: by name)."""
    latest: dict[ModelRef, datetime] = {}
    for entry in entries:
        if entry.model and entry.provider:
            ref = ModelRef(entry.provider, entry.model)
            when = parse_time(entry.time)
            if ref not in latest or when > latest[ref]:
                latest[ref] = when
    return most_expensive_of(latest, pricer)


def most_expensive_of(latest: Mapping[ModelRef, datetime], pricer: Pricer) -> ModelRef | None:
    """Of served models (with when each last served), the highest priced for the reference usage."""
    priced = [
        (cost, str(ref), ref) for ref, when in latest.items() if (cost := pricer(ref, _REFERENCE_USAGE, when))
    ]
    if not priced:
        return None
    return max(priced, key=lambda item: (item[0], item[1]))[2]


@dataclass(frozen=True, slots=True)
class SavingsRow:
    """One window and group. Money in micro-USD; only ``compared`` requests enter the cost columns."""

    window: str
    group: str
    requests: int = 0
    compared: int = 0
    downgraded: int = 0
    light_only: int = 0
    auto: int = 0
    actual_micro_usd: int = 0
    asked_micro_usd: int = 0
    premium_micro_usd: int = 0
    estimated: int = 0  # compared requests whose ledger cost is an estimate
    estimated_micro_usd: int = 0
    unpriced: int = 0  # left out: unpriced, no usage recorded, or the asked-for model has no price
    unpriced_micro_usd: int = 0  # their ledger cost

    @property
    def saved_micro_usd(self) -> int:
        return self.asked_micro_usd - self.actual_micro_usd

    @property
    def saved_vs_premium_micro_usd(self) -> int:
        return self.premium_micro_usd - self.actual_micro_usd


def _add(row: SavingsRow, other: SavingsRow) -> SavingsRow:
    values = {f.name: getattr(row, f.name) + getattr(other, f.name) for f in fields(SavingsRow)[2:]}
    return SavingsRow(row.window, row.group, **values)


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A request that could not be compared, and why (for the report's separate listing)."""

    time: str
    request_id: str
    model: str
    requested_model: str
    reason: str
    cost_micro_usd: int


@dataclass(frozen=True, slots=True)
class SavingsReport:
    by: str
    window: str
    baseline: ModelRef | None
    baseline_source: str
    rows: tuple[SavingsRow, ...]
    total: SavingsRow
    left_out: tuple[LeftOut, ...]


def group_of(entry: Entry, by: str) -> str:
    attr = entry.attribution
    value = {
        "team": attr.team,
        "service": attr.service,
        "feature": attr.feature,
        "namespace": attr.namespace,
        "workload": attr.workload,
        "model": f"{entry.provider}/{entry.model}" if entry.model else None,
        "provider": entry.provider,
        "tier": entry.tier,
    }[by]
    return value or "(none)"


def _cost_on(ref: ModelRef, entry: Entry, usage: EntryUsage, when: datetime, pricer: Pricer) -> int | None:
    if entry.provider == ref.provider and entry.model == ref.model:
        return entry.cost_micro_usd  # the model that served: what the ledger charged, not a re-pricing
    return pricer(ref, usage, when)


def _one(
    entry: Entry, ask: Ask, baseline: ModelRef | None, tier_models: dict[str, ModelRef], pricer: Pricer
) -> tuple[SavingsRow, str | None]:
    """The row contribution of one entry, and why it was left out (None when compared)."""
    verdict = enforced_action(entry)
    counts = {
        "requests": 1,
        "downgraded": int(verdict == "DOWNGRADE"),
        "light_only": int(verdict == "LIGHT_ONLY"),
        "auto": int(ask.auto),
    }
    left_out = SavingsRow("", "", **counts, unpriced=1, unpriced_micro_usd=entry.cost_micro_usd)
    usage = entry.usage
    if entry.cost_basis == "unpriced":
        return left_out, "the served model has no price (recorded at $0)"
    if usage is None or not entry.model or not entry.provider:
        return left_out, "no token usage recorded"
    asked_ref = ask.pinned or (tier_models.get(ask.tier) if ask.tier else None) or baseline
    if asked_ref is None:
        return left_out, "no baseline model to compare with"
    when = parse_time(entry.time)
    asked = _cost_on(asked_ref, entry, usage, when, pricer)
    if asked is None and ask.pinned is not None:
        asked = entry.cost_micro_usd  # an alias: a pinned request is served by the very model it names
    premium = _cost_on(baseline, entry, usage, when, pricer) if baseline is not None else asked
    if asked is None or premium is None:
        missing = asked_ref if asked is None else baseline
        return left_out, f"no catalog price for {missing}"
    estimated = entry.cost_basis != "exact"
    return (
        SavingsRow(
            "",
            "",
            **counts,
            compared=1,
            actual_micro_usd=entry.cost_micro_usd,
            asked_micro_usd=asked,
            premium_micro_usd=premium,
            estimated=int(estimated),
            estimated_micro_usd=entry.cost_micro_usd if estimated else 0,
        ),
        None,
    )


def analyze_savings(
    entries: Sequence[Entry],
    *,
    by: str,
    window: WindowKind,
    tz: tzinfo,
    baseline: ModelRef | None = None,
    tier_models: dict[str, ModelRef] | None = None,
    pricer: Pricer = catalog_cost,
) -> SavingsReport:
    """Savings per calendar window (in ``tz``) and ``by`` value.

    The asked-for cost of a pinned request is that model's; of ``auto`` and ``tier:X`` requests, the
    ``tier_models[X]`` model or else ``baseline`` (default: the most expensive model served).
    """
    if by not in GROUPS:
        raise ValueError(f"cannot group by {by!r}; choose one of {', '.join(GROUPS)}")
    source = "--baseline"
    if baseline is None:
        baseline = most_expensive_model(entries, pricer)
        source = "the most expensive model served in the ledger"
    kinds, served = connection_kinds(entries), served_models(entries)
    tiers = frozenset(e.tier for e in entries if e.tier)
    table: dict[tuple[str, str], SavingsRow] = {}
    total = SavingsRow("ALL", "TOTAL")
    left: list[LeftOut] = []
    for entry in entries:
        ask = ask_of(entry, kinds, served, tiers)
        part, reason = _one(entry, ask, baseline, tier_models or {}, pricer)
        label = window_label(parse_time(entry.time).astimezone(tz).date(), window)
        key = (label, group_of(entry, by))
        table[key] = _add(table.get(key, SavingsRow(*key)), part)
        total = _add(total, part)
        if reason is not None:
            model = f"{entry.provider}/{entry.model}" if entry.model else "(none)"
            cost = entry.cost_micro_usd
            left.append(LeftOut(entry.time, entry.request_id, model, entry.requested_model, reason, cost))
    rows = tuple(sorted(table.values(), key=lambda r: (r.window, -r.saved_micro_usd, r.group)))
    return SavingsReport(by, window, baseline, source, rows, total, tuple(left))
