"""What a config must also satisfy for a sidecar to serve it, beyond its schema. Pure.

The CRDs accept values the sidecar cannot use (fault 33): a timezone no zone database knows, an
alias that collides with another model of the same connection (or with ``auto``/``tier:``), a price
or a cap too large to compute with. Render refuses them, naming the resource and the field; a
sidecar handed a config that carries one anyway rejects it like a bad signature.

Field paths name the custom resource's spec (``spec.limits[0].timezone``), so the same message is
useful on a resource's condition and in a sidecar's ``/readyz``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .money import PPM
from .schema import Budget, Config, Model, Rates
from .windows import zone

# $1,000,000 per million tokens: above any real price by far, and small enough that a request's
# cost (tokens times rate) stays an exact integer well inside 64 bits and a float.
MAX_RATE_MICRO_PER_MTOK = 10**12
# $1,000,000,000: the CRD's maximum amountUSD.
MAX_AMOUNT_MICRO_USD = 10**15
# ``failMode: static``: the allowance stays small and short (the CRD's bounds): every sidecar of the
# fleet may spend it beyond the cap during an outage.
MAX_ALLOWANCE_MICRO_USD = 1_000 * PPM
MAX_ALLOWANCE_SECONDS = 3_600
RESERVED_NAMES = ("auto",)
RESERVED_PREFIX = "tier:"


@dataclass(frozen=True, slots=True)
class Problem:
    """One unusable value: the resource, the spec field and why."""

    kind: str
    name: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}: {self.field}: {self.message}"


def timezone_problem(name: str) -> str | None:
    """Why ``name`` cannot be a budget window's timezone, or None when it can."""
    try:
        zone(name)
    except ValueError:
        return f"unknown timezone {name!r} (use an IANA name such as UTC or Europe/Berlin)"
    return None


def _rate_problems(rates: Rates, prefix: str) -> Iterator[tuple[str, str]]:
    for wire, spec_name in (
        (rates.input_per_mtok, "inputPerMTok"),
        (rates.output_per_mtok, "outputPerMTok"),
        (rates.cached_input_per_mtok, "cachedInputPerMTok"),
        (rates.cache_write_per_mtok, "cacheWritePerMTok"),
    ):
        if wire is not None and not 0 <= wire <= MAX_RATE_MICRO_PER_MTOK:
            limit = MAX_RATE_MICRO_PER_MTOK // PPM
            yield f"{prefix}.{spec_name}", f"must be between 0 and {limit} USD per million tokens"


def model_problems(models: Sequence[Model]) -> list[tuple[str, str]]:
    """(field, problem) for one connection's models: names and aliases unique, prices computable."""
    problems: list[tuple[str, str]] = []
    names: dict[str, int] = {}
    for i, model in enumerate(models):
        if model.name in names:
            problems.append((f"spec.models[{i}].name", f"{model.name!r} is also model {names[model.name]}"))
        names.setdefault(model.name, i)
    aliases: dict[str, int] = {}
    for i, model in enumerate(models):
        alias = model.alias
        if alias is None or alias == model.name:
            pass
        elif alias in names:
            problems.append(
                (
                    f"spec.models[{i}].alias",
                    f"{alias!r} is the name of model {names[alias]} of this connection",
                )
            )
        elif alias in aliases:
            problems.append(
                (f"spec.models[{i}].alias", f"{alias!r} is also the alias of model {aliases[alias]}")
            )
        elif alias in RESERVED_NAMES or alias.startswith(RESERVED_PREFIX):
            problems.append((f"spec.models[{i}].alias", f"{alias!r} is reserved (auto, tier:<name>)"))
        if alias is not None:
            aliases.setdefault(alias, i)
        if model.price is not None:
            problems += _rate_problems(model.price.base, f"spec.models[{i}].pricing")
            for tier in model.price.tiers:
                problems += _rate_problems(tier.rates, f"spec.models[{i}].pricing")
    return problems


def budget_problems(budget: Budget) -> list[tuple[str, str]]:
    """(field, problem) for one policy: known timezones, caps and fractions in range."""
    problems: list[tuple[str, str]] = []
    for i, limit in enumerate(budget.limits):
        tz = timezone_problem(limit.timezone)
        if tz is not None:
            problems.append((f"spec.limits[{i}].timezone", tz))
        if not 0 < limit.amount_micro_usd <= MAX_AMOUNT_MICRO_USD:
            top = MAX_AMOUNT_MICRO_USD // PPM
            problems.append((f"spec.limits[{i}].amountUSD", f"must be above 0 and at most {top} USD"))
    problems += _fail_mode_problems(budget)
    for i, step in enumerate(budget.ladder):
        if not 0 < step.at_ppm <= PPM:
            problems.append((f"spec.ladder[{i}].at", "must be in (0, 1]"))
    for i, threshold in enumerate(budget.alerts.thresholds_ppm):
        if not 0 < threshold <= PPM:
            problems.append((f"spec.alerts.thresholds[{i}]", "must be in (0, 1]"))
    return problems


def _fail_mode_problems(budget: Budget) -> list[tuple[str, str]]:
    allowance = budget.static_allowance
    if budget.fail_mode == "closed":
        return [] if allowance is None else [("spec.staticAllowance", "only with failMode: static")]
    if allowance is None:
        return [("spec.staticAllowance", "failMode: static needs an allowance (amountUSD, seconds)")]
    problems: list[tuple[str, str]] = []
    smallest = min((limit.amount_micro_usd for limit in budget.limits), default=MAX_ALLOWANCE_MICRO_USD)
    if not 0 < allowance.amount_micro_usd <= min(MAX_ALLOWANCE_MICRO_USD, smallest):
        top = MAX_ALLOWANCE_MICRO_USD // PPM
        problems.append(
            ("spec.staticAllowance.amountUSD", f"must be above 0, at most {top} USD and the limits")
        )
    if not 0 < allowance.seconds <= MAX_ALLOWANCE_SECONDS:
        problems.append(("spec.staticAllowance.seconds", f"must be 1 to {MAX_ALLOWANCE_SECONDS}"))
    return problems


def config_problems(config: Config) -> list[Problem]:
    """Every value in ``config`` a sidecar cannot serve; empty when it can serve all of it."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for provider in config.providers:
        if provider.name in seen:
            problems.append(Problem("ProviderConnection", provider.name, "metadata.name", "appears twice"))
        seen.add(provider.name)
        problems += (
            Problem("ProviderConnection", provider.name, f, m) for f, m in model_problems(provider.models)
        )
    budgets: set[str] = set()
    for budget in config.budgets:
        if budget.name in budgets:
            problems.append(Problem("BudgetPolicy", budget.name, "metadata.name", "appears twice"))
        budgets.add(budget.name)
        problems += (Problem("BudgetPolicy", budget.name, f, m) for f, m in budget_problems(budget))
    return problems
