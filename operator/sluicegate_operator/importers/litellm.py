"""LiteLLM proxy config.yaml → Sluicegate resources. Pure.

Each model group becomes a RoutingTier of its deployments (plus its fallback groups), each distinct
account a ProviderConnection, the proxy-wide budget a BudgetPolicy. Keys are never copied.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .drafts import (
    RETRY_CLASSES,
    Candidate,
    ImportResult,
    ImportRun,
    Resource,
    assemble,
    budget_resource,
    dns_name,
    tier_resource,
    unique_name,
)
from .litellm_deployments import read_deployment

SOURCE = "LiteLLM proxy config"
# LiteLLM budget_duration → the calendar window closest to it.
WINDOWS: Mapping[str, str] = {
    "1d": "day", "24h": "day", "7d": "week", "1w": "week", "30d": "month", "1mo": "month",
}  # fmt: skip
_ROUTER_NOTES: Mapping[str, str] = {
    "num_retries": "Sluicegate moves to the next candidate instead of retrying one (fallback.maxRetries)",
    "retry_policy": "Sluicegate moves to the next candidate instead of retrying one (fallback.maxRetries)",
    "allowed_fails": "Sluicegate's circuit breaker skips failing candidates on its own",
    "cooldown_time": "Sluicegate's circuit breaker skips failing candidates on its own",
    "context_window_fallbacks": "Sluicegate does not reroute on context-window errors; use model auto",
    "content_policy_fallbacks": "Sluicegate does not reroute on content-policy errors",
    "redis_host": "no shared state: each sidecar enforces its own budget copy",
    "redis_port": "no shared state: each sidecar enforces its own budget copy",
    "redis_password": "no shared state: each sidecar enforces its own budget copy",
    "provider_budget_config": "a BudgetPolicy caps Pods (selector, splitBy), not one provider",
    "enable_pre_call_checks": "Sluicegate clamps max_tokens to what the model and budget allow",
}
_USER_BUDGETS = ("max_end_user_budget", "max_internal_user_budget", "internal_user_budget_duration")
_USED_SETTINGS = frozenset(
    {"fallbacks", "default_fallbacks", "routing_strategy", "model_group_alias", "timeout", "request_timeout"}
    | {"max_budget", "budget_duration", *_USER_BUDGETS}
)


def import_litellm(config: Mapping[str, Any], *, namespace: str | None = None) -> ImportResult:
    """Resources equivalent to one LiteLLM proxy config.yaml, and what could not be carried over."""
    run = ImportRun()
    router = _section(config, "router_settings", run)
    library = _section(config, "litellm_settings", run)
    settings = {**library, **router}  # router_settings win where both set a key
    groups: dict[str, list[Candidate]] = {}
    for i, entry in enumerate(config.get("model_list") or []):
        where = f"model_list[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("model_name"), str):
            run.drop(where, "an entry without model_name", "not a LiteLLM deployment")
            continue
        candidate = read_deployment(entry, where, run)
        if candidate is not None:
            groups.setdefault(entry["model_name"], []).append(candidate)
    timeout = settings.get("timeout", settings.get("request_timeout"))
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        for draft in run.book.drafts():
            if draft.total_seconds is None:
                draft.raise_timeout(float(timeout))
    tiers = _tiers(groups, settings, namespace, run)
    budgets = _budgets(library, namespace, run)
    for key in sorted(set(settings) - _USED_SETTINGS):
        section = "router_settings" if key in router else "litellm_settings"
        why = _ROUTER_NOTES.get(key, "a LiteLLM setting with no Sluicegate equivalent")
        run.drop(f"{section}.{key}", key, why)
    _general(config, run)
    return assemble(SOURCE, run.book, tiers, budgets, run.dropped, run.todo, namespace)


def _section(config: Mapping[str, Any], name: str, run: ImportRun) -> dict[str, Any]:
    value = config.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        run.drop(name, name, "not a mapping; ignored")
        return {}
    return dict(value)


def _fallback_map(settings: Mapping[str, Any], run: ImportRun) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for i, item in enumerate(settings.get("fallbacks") or []):
        if not isinstance(item, Mapping):
            run.drop(f"fallbacks[{i}]", "an entry that is not {group: [groups]}", "ignored")
            continue
        for group, targets in item.items():
            out.setdefault(str(group), []).extend(str(t) for t in (targets or []))
    return out


def _tiers(
    groups: Mapping[str, list[Candidate]], settings: Mapping[str, Any], namespace: str | None, run: ImportRun
) -> list[Resource]:
    fallbacks = _fallback_map(settings, run)
    defaults = [str(g) for g in settings.get("default_fallbacks") or []]
    strategy = str(settings.get("routing_strategy") or "simple-shuffle")
    if strategy not in ("simple-shuffle", "cost-based-routing"):
        run.drop(
            "router_settings.routing_strategy", strategy,
            "Sluicegate has no latency- or usage-based picking: groups are weighted (by weight, rpm or "
            "tpm) and the circuit breaker skips failing deployments",
        )  # fmt: skip
    for group in set(fallbacks) - set(groups):
        run.drop(f"fallbacks.{group}", f"fallbacks for unknown group '{group}'", "no such model_name")
    names: dict[str, str] = {}
    for group in groups:
        name = unique_name(dns_name(group, fallback="group", keep_dots=True), names.values())
        names[group] = name
        if name != group:
            run.todo.append(f"Model group '{group}' is tier '{name}': clients ask for model 'tier:{name}'.")
    tiers: list[Resource] = []
    offered = _offered(run)
    for rank, (group, own) in enumerate(groups.items(), start=1):
        extra = [g for g in fallbacks.get(group, defaults if group not in defaults else []) if g != group]
        missing = [g for g in extra if g not in groups]
        if missing:
            run.drop(
                f"fallbacks.{group}", ", ".join(missing), "fallback to a group that is not in model_list"
            )
        chain = [c for g in extra if g in groups for c in groups[g]]
        kind = "cheapest" if strategy == "cost-based-routing" else "weighted"
        candidates = list(own)
        if chain:
            if kind == "weighted" and len(own) > 1:
                run.drop(
                    f"model group {group}", "load balancing inside a group that has fallbacks",
                    "Sluicegate tiers are flat: the group's deployments are tried in weight order, then its "
                    "fallbacks",
                )  # fmt: skip
            kind = "ordered"
            candidates = sorted(own, key=lambda c: c.weight, reverse=True) + chain
        note = f"LiteLLM model group '{group}'" + (f", then fallbacks {', '.join(extra)}" if chain else "")
        tier = tier_resource(
            names[group], rank * 10, kind, candidates, RETRY_CLASSES, namespace, run.dropped, note
        )
        if tier is not None:
            tiers.append(tier)
            _name_clash(group, names[group], offered, run)
    for alias, target in _aliases(settings, run):
        if target in names and tiers:
            source = next(t for t in tiers if t.body["metadata"]["name"] == names[target])
            name = unique_name(dns_name(alias, fallback="alias", keep_dots=True), names.values())
            names[alias] = name
            body = copy.deepcopy(dict(source.body))
            body["metadata"]["name"] = name
            tiers.append(Resource(body, f"router_settings.model_group_alias '{alias}' → '{target}'"))
        else:
            run.drop(f"model_group_alias.{alias}", alias, f"its group '{target}' is not in model_list")
    return tiers


def _offered(run: ImportRun) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for draft in run.book.drafts():
        for model in draft.models:
            out.setdefault(model, []).append(draft.name)
    return out


def _name_clash(group: str, tier: str, offered: Mapping[str, list[str]], run: ImportRun) -> None:
    """A bare model name means a model before a tier: say what a client asking for it gets."""
    owners = offered.get(group, [])
    if len(owners) == 1:
        run.todo.append(
            f"Model '{group}' is also a model name: a bare '{group}' is pinned to {owners[0]}/{group} "
            f"(no fallback); ask for 'tier:{tier}' to get the group's routing."
        )
    elif len(owners) > 1:
        run.todo.append(
            f"Model '{group}' is offered by {len(owners)} connections, so a bare '{group}' is refused "
            f"as ambiguous; ask for 'tier:{tier}'."
        )


def _aliases(settings: Mapping[str, Any], run: ImportRun) -> list[tuple[str, str]]:
    raw = settings.get("model_group_alias") or {}
    if not isinstance(raw, Mapping):
        return []
    out: list[tuple[str, str]] = []
    for alias, target in raw.items():
        group = target.get("model") if isinstance(target, Mapping) else target
        if isinstance(group, str):
            out.append((str(alias), group))
    return out


def _budgets(library: Mapping[str, Any], namespace: str | None, run: ImportRun) -> list[Resource]:
    out: list[Resource] = []
    amount = library.get("max_budget")
    if amount is not None:
        duration = str(library.get("budget_duration") or "")
        window = WINDOWS.get(duration)
        if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
            run.drop("litellm_settings.max_budget", "max_budget", "not a positive number")
        elif window is None:
            run.drop(
                "litellm_settings.max_budget", f"a budget over '{duration or 'all time'}'",
                "Sluicegate caps calendar windows only (day, week, month); add a BudgetPolicy yourself",
            )  # fmt: skip
        else:
            comment = (
                f"litellm_settings.max_budget over {duration}: LiteLLM's window rolls from its first use, "
                f"Sluicegate's is the calendar {window} (UTC)"
            )
            out.append(
                budget_resource(
                    "litellm-max-budget", window, float(amount), namespace, comment, action="BLOCK"
                )
            )
    for key in _USER_BUDGETS:
        if key in library:
            run.drop(
                f"litellm_settings.{key}", key,
                "Sluicegate has no user accounts; cap per user with a BudgetPolicy splitBy: user "
                "(the app sends X-Sluicegate-User)",
            )  # fmt: skip
    return out


def _general(config: Mapping[str, Any], run: ImportRun) -> None:
    general = config.get("general_settings")
    if isinstance(general, Mapping):
        for key in sorted(general):
            why = "a LiteLLM proxy server setting with no Sluicegate equivalent"
            if key == "master_key":
                why = "apps need no key: the sidecar ignores Authorization and the Pod is the identity"
            elif key in ("database_url", "store_model_in_db"):
                why = "no database: resources live in Kubernetes and spend in the sidecar's ledger"
            run.drop(f"general_settings.{key}", key, why + " (value not copied)")
    env = config.get("environment_variables")
    if isinstance(env, Mapping) and env:
        run.drop(
            "environment_variables", ", ".join(sorted(map(str, env))),
            "values not copied (they may be secrets); provider keys belong in the Secret stubs",
        )  # fmt: skip
    for key in sorted(set(config) - {"model_list", "router_settings", "litellm_settings"}):
        if key not in ("general_settings", "environment_variables"):
            run.drop(str(key), str(key), "a LiteLLM config section with no Sluicegate equivalent")
