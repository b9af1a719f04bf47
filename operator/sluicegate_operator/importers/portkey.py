"""Portkey config JSON → Sluicegate resources. Pure.

Targets become candidates of one RoutingTier (fallback → ordered, loadbalance → weighted; nested
strategies are flattened, conditional branches become tiers of their own). Keys are never copied.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from .drafts import (
    RETRY_CLASSES,
    Candidate,
    ImportResult,
    Resource,
    as_mapping,
    assemble,
    dns_name,
    retry_classes,
    tier_resource,
    unique_name,
)
from .portkey_targets import (
    LEAF_FIELDS,
    NOT_CARRIED,
    Inherited,
    Walk,
    not_carried,
    read_target,
    unknown_keys,
)

SOURCE = "Portkey config"


def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def normalise(node: Any) -> Any:
    """Portkey accepts camelCase and snake_case keys; use snake_case (override_params left as is)."""
    if isinstance(node, list):
        return [normalise(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = _snake(str(key))
        out[name] = (
            dict(value) if name == "override_params" and isinstance(value, Mapping) else normalise(value)
        )
    return out


def import_portkey(
    config: Mapping[str, Any],
    *,
    tier: str = "portkey",
    namespace: str | None = None,
    default_model: str | None = None,
) -> ImportResult:
    """Resources equivalent to one Portkey config, and what could not be carried over.

    ``tier`` names the RoutingTier clients ask for (``model: tier:<name>``); ``default_model`` is
    used for targets without ``override_params.model`` (Portkey sent the request's own model).
    """
    root = normalise(config)
    walk = Walk(default_model=default_model)
    base = dns_name(tier, fallback="portkey", keep_dots=True)
    tiers: list[Resource] = []
    branches = _branches(root, base, walk)
    for rank, (name, strategy, candidates, note) in enumerate(branches, start=1):
        resource = tier_resource(
            name, rank * 10, strategy, candidates, walk.retry_on or set(RETRY_CLASSES),
            namespace, walk.dropped, note,
        )  # fmt: skip
        if resource is None:
            walk.drop(name, f"tier {name}", "none of its targets could be carried over (see above)")
        else:
            tiers.append(resource)
    for draft in walk.book.empty():
        walk.drop(draft.name, f"connection {draft.name}", "no model could be determined for it")
    if tiers:
        names = ", ".join(f"tier:{r.body['metadata']['name']}" for r in tiers)
        walk.todo.append(
            f"Portkey applied the config to every request; in Sluicegate the app picks it by model name: "
            f"ask for {names} (the model in the request is otherwise used as is)."
        )
    return assemble(SOURCE, walk.book, tiers, [], walk.dropped, walk.todo, namespace)


def _branches(root: Mapping[str, Any], base: str, walk: Walk) -> list[tuple[str, str, list[Candidate], str]]:
    """The tiers to write: one, or one per conditional branch."""
    strategy = as_mapping(root.get("strategy"))
    if strategy.get("mode") != "conditional":
        kind, leaves = _node(root, "config", Inherited(), walk)
        return [(base, kind, leaves, "")]
    targets = [t for t in root.get("targets", []) if isinstance(t, Mapping)]
    inherited = _inherit(root, Inherited())
    _retry(root, "config", walk)
    default = strategy.get("default")
    out: list[tuple[str, str, list[Candidate], str]] = []
    names: dict[str, str] = {}
    for i, target in enumerate(targets):
        label = str(target.get("name") or f"target-{i}")
        name = base if label == default else unique_name(
            dns_name(f"{base}-{label}", fallback=f"{base}-{i}", keep_dots=True), [n for n, *_ in out]
        )  # fmt: skip
        names[label] = name
        kind, leaves = _node(target, f"targets[{i}]", inherited, walk)
        out.append((name, kind, leaves, f"Portkey conditional branch '{label}'"))
    for i, condition in enumerate(strategy.get("conditions", []) or []):
        then = condition.get("then") if isinstance(condition, Mapping) else None
        query = condition.get("query") if isinstance(condition, Mapping) else None
        model = _model_condition(query)
        tier_name = names.get(str(then))
        if model is not None and tier_name is not None:
            walk.todo.append(
                f"Requests that Portkey routed by model '{model}' to '{then}': "
                f"ask for model 'tier:{tier_name}'."
            )
        else:
            walk.drop(
                f"strategy.conditions[{i}]",
                "conditional routing on request metadata or parameters",
                "Sluicegate routes by the model name only; each branch is a tier the app picks "
                f"with model 'tier:<name>'{f' (this one: tier:{tier_name})' if tier_name else ''}",
            )
    unknown_keys(strategy, {"mode", "conditions", "default", "on_status_codes"}, "strategy", walk)
    unknown_keys(
        root,
        {"strategy", "targets", "retry", "override_params", "request_timeout"} | set(NOT_CARRIED),
        "config",
        walk,
    )
    not_carried(root, "config", walk)
    return out


def _model_condition(query: Any) -> str | None:
    """X when a condition is exactly ``{"params.model": {"$eq": X}}`` (or ``{"params.model": X}``)."""
    if not isinstance(query, Mapping) or list(query) != ["params.model"]:
        return None
    value = query["params.model"]
    if isinstance(value, Mapping) and list(value) == ["$eq"]:
        value = value["$eq"]
    return value if isinstance(value, str) else None


def _inherit(node: Mapping[str, Any], inherited: Inherited) -> Inherited:
    """Targets inherit their parents' override_params (theirs win) and request_timeout."""
    params = dict(inherited.override_params)
    if isinstance(node.get("override_params"), Mapping):
        params.update(node["override_params"])
    timeout = node.get("request_timeout", inherited.request_timeout)
    return Inherited(params, timeout if isinstance(timeout, int | float) else None)


def _node(
    node: Mapping[str, Any], where: str, inherited: Inherited, walk: Walk
) -> tuple[str, list[Candidate]]:
    """A node's candidates in try order (``ordered``) or with traffic shares (``weighted``)."""
    here = _inherit(node, inherited)
    _retry(node, where, walk)
    targets = node.get("targets")
    if not isinstance(targets, list) or not targets:
        leaf = read_target(node, where, here, walk)
        return "ordered", [] if leaf is None else [leaf]
    not_carried(node, where, walk)
    unknown_keys(node, LEAF_FIELDS | set(NOT_CARRIED), where, walk)
    strategy = as_mapping(node.get("strategy"))
    mode = strategy.get("mode", "single")
    children = [(i, t) for i, t in enumerate(targets) if isinstance(t, Mapping)]
    if not children:
        walk.drop(f"{where}.targets", "targets that are not objects", "nothing to route to")
        return "ordered", []
    if mode == "conditional":
        default = strategy.get("default")
        chosen = next((c for c in children if c[1].get("name") == default), children[0])
        walk.drop(
            f"{where}.strategy", "nested conditional routing",
            f"only a top-level conditional becomes several tiers; here only target '{chosen[1].get('name')}' "
            "was kept",
        )  # fmt: skip
        children = [chosen]
    if mode == "loadbalance":
        return "weighted", _loadbalance(children, where, here, walk)
    if mode == "fallback":
        codes = strategy.get("on_status_codes", node.get("on_status_codes"))
        _fallback_codes(codes, f"{where}.strategy.on_status_codes", walk)
    elif mode == "single" and len(children) > 1:
        walk.drop(
            f"{where}.targets", "targets after the first", "mode 'single' used only the first; left out"
        )
        children = children[:1]
    elif mode not in ("single", "conditional"):
        walk.drop(f"{where}.strategy.mode", f"mode '{mode}'", "unknown Portkey strategy; read as fallback")
    out: list[Candidate] = []
    for i, child in children:
        kind, leaves = _node(child, f"{where}.targets[{i}]", here, walk)
        if kind == "weighted" and len(leaves) > 1:
            walk.drop(
                f"{where}.targets[{i}]", "load balancing nested inside a fallback",
                "Sluicegate tiers are flat: these targets are tried in the order of their weights",
            )  # fmt: skip
            leaves = sorted(leaves, key=lambda c: c.weight, reverse=True)
        out.extend(leaves)
    primary = [
        Candidate(c.connection, c.model, Fraction(1 if j == 0 else 0), c.where) for j, c in enumerate(out)
    ]
    return "ordered", primary


def _loadbalance(
    children: list[tuple[int, Mapping[str, Any]]], where: str, inherited: Inherited, walk: Walk
) -> list[Candidate]:
    weights: list[Fraction] = []
    for i, child in children:
        raw = child.get("weight", 1)
        if not isinstance(raw, int | float) or isinstance(raw, bool) or raw < 0:
            walk.drop(f"{where}.targets[{i}].weight", "a weight that is not a number >= 0", "read as 1")
            raw = 1
        weights.append(Fraction(str(raw)))
    total = sum(weights) or Fraction(1)
    out: list[Candidate] = []
    for (i, child), weight in zip(children, weights, strict=True):
        if weight == 0:
            walk.drop(f"{where}.targets[{i}]", "a target with weight 0", "it received no traffic; left out")
            continue
        kind, leaves = _node(child, f"{where}.targets[{i}]", inherited, walk)
        if kind == "ordered" and len(leaves) > 1:
            walk.drop(
                f"{where}.targets[{i}]", "a fallback chain nested inside load balancing",
                "Sluicegate tiers are flat: its first target takes the share, the others serve only "
                "when a pick fails (weight 1)",
            )  # fmt: skip
        inner = sum(c.weight for c in leaves) or Fraction(1)
        share = weight / total
        out.extend(Candidate(c.connection, c.model, share * c.weight / inner, c.where) for c in leaves)
    return out


def _retry(node: Mapping[str, Any], where: str, walk: Walk) -> None:
    retry = node.get("retry")
    if not isinstance(retry, Mapping):
        return
    attempts = retry.get("attempts")
    if isinstance(attempts, int) and attempts > 0:
        walk.drop(
            f"{where}.retry.attempts", f"{attempts} retries of the same target",
            "Sluicegate never retries the same candidate: it moves to the next one (fallback.maxRetries) "
            "and honours Retry-After as a cool-down; add a second connection for the same model to retry "
            "on another account",
        )  # fmt: skip
    _fallback_codes(retry.get("on_status_codes"), f"{where}.retry.on_status_codes", walk)


def _fallback_codes(codes: Any, where: str, walk: Walk) -> None:
    if not isinstance(codes, list):
        walk.retry_on.update(RETRY_CLASSES)
        return
    classes, ignored = retry_classes(codes)
    walk.retry_on.update(classes | {"timeout", "connect"})
    partial = sorted(c for c in codes if isinstance(c, int) and 500 <= c <= 599)
    if partial:
        walk.drop(where, f"only status {', '.join(map(str, partial))}", "Sluicegate retries on any 5xx")
    if ignored:
        walk.drop(
            where, f"status {', '.join(map(str, ignored))}",
            "Sluicegate never falls back on a 4xx the request caused (it would fail everywhere); a "
            "401/403 benches that connection's key and moves on",
        )  # fmt: skip
