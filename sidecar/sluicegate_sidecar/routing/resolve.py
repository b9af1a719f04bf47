"""Model-name resolution: what the client's ``model`` field means under the current config. Pure.

Precedence, first match wins (unambiguous by construction):
1. The name is validated (``catalog.model_id_problem``); an invalid one is a 400 and is never echoed.
2. ``auto`` is always the classifier, even if some model were named "auto".
3. ``tier:<name>`` is always that tier.
4. ``<a>/<b>`` (``b`` may hold more slashes): ``a`` names a connection offering ``b`` (name or
   alias) → that model, pinned. Else ``a`` is a provider kind (``openai/gpt-4o``) with connections
   offering ``b`` → every one of them, pinned to that model. Else the whole text is a bare name:
   provider model ids hold slashes (``meta-llama/Llama-3.3-70B-Instruct``, Groq's
   ``openai/gpt-oss-120b``), and the first segment names a connection or provider only when one
   by that name serves the rest.
5. A bare name: a model name or alias offered by exactly one connection → pinned to it; offered
   by several → 404 asking for ``<connection>/<model>``. Model names win over tier names: only a
   bare name that no connection offers may mean the tier of that name.
Otherwise 404 ``model_not_found``, naming only what the client sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

from sluicegate_contract.modelnames import AUTO, TIER_PREFIX
from sluicegate_contract.schema import Fallback, Strategy

from .autotier import NoAutoTier, RequestFeatures, choose_tier
from .catalog import ModelCatalog, Target, model_id_problem

ResolutionKind = Literal["auto", "tier", "pinned"]
_PINNED_FALLBACK = Fallback()


class InvalidModel(ValueError):
    """The model field is malformed (400 ``invalid_request_error``); the message never echoes it."""

    status = 400
    code = "invalid_model"


class UnknownModel(LookupError):
    """No configured model answers to the name (404 ``model_not_found``)."""

    status = 404
    code = "model_not_found"


class Resolution(msgspec.Struct, frozen=True, gc=False):
    """What to try for one request.

    ``candidates`` may be empty (every candidate sits on an unusable connection): the pipeline
    then answers 503. ``strategy`` and ``fallback`` are the tier's; a pinned resolution uses
    ``cheapest`` among its same-model connections and the default fallback policy.
    """

    kind: ResolutionKind
    tier: str | None
    candidates: tuple[Target, ...]
    pinned: bool
    strategy: Strategy
    fallback: Fallback
    reason: str | None = None


def _unknown(model_field: str) -> UnknownModel:
    return UnknownModel(f"The model '{model_field}' does not exist or you do not have access to it.")


def _pinned(targets: tuple[Target, ...], catalog: ModelCatalog) -> Resolution:
    usable = tuple(t for t in targets if catalog.is_usable(t.connection))
    return Resolution("pinned", None, usable, True, "cheapest", _PINNED_FALLBACK)


def _tier(name: str, catalog: ModelCatalog, kind: ResolutionKind, reason: str | None) -> Resolution | None:
    tier = catalog.tier(name)
    if tier is None:
        return None
    return Resolution(
        kind, tier.name, catalog.tier_targets(name), False, tier.strategy, tier.fallback, reason
    )


def _bare(model_field: str, catalog: ModelCatalog) -> Resolution:
    targets = catalog.bare(model_field)
    if len(targets) == 1:
        return _pinned(targets, catalog)
    if len(targets) > 1:
        tier = _tier(model_field, catalog, "tier", None)
        if tier is not None:  # a tier named like the model it spreads (e.g. a LiteLLM model group)
            return tier
        raise UnknownModel(
            f"The model '{model_field}' is offered by several connections; "
            f"ask for '<connection>/{model_field}' (see GET /v1/models)."
        )
    resolution = _tier(model_field, catalog, "tier", None)
    if resolution is None:
        raise _unknown(model_field)
    return resolution


def resolve(
    model_field: str,
    catalog: ModelCatalog,
    features: Callable[[], RequestFeatures],
    hint: str | None = None,
) -> Resolution:
    """Resolve the client's ``model`` (see the module docstring for the precedence).

    Raises ``InvalidModel`` (400) or ``UnknownModel`` (404). ``features`` (called only then: reading
    them walks the request) and ``hint`` only matter for ``auto``.
    """
    if not isinstance(model_field, str):
        raise InvalidModel("The model must be a string.")
    known = catalog.resolutions.get(model_field)
    if known is not None:
        return known  # resolved before under this config: the same answer (the hot path)
    problem = model_id_problem(model_field)
    if problem is not None:
        raise InvalidModel(f"Invalid model: {problem}.")
    if model_field == AUTO:
        try:
            tier, reason = choose_tier(features(), catalog.tiers_by_rank(), hint)
        except NoAutoTier:
            raise _unknown(model_field) from None
        resolution = _tier(tier.name, catalog, "auto", reason)
        assert resolution is not None  # choose_tier only returns the catalog's tiers
        return resolution
    resolution = _named(model_field, catalog)
    catalog.resolutions[model_field] = resolution
    return resolution


def _named(model_field: str, catalog: ModelCatalog) -> Resolution:
    """A valid name other than ``auto``: a tier, a pinned model or a bare name (config only)."""
    if model_field.startswith(TIER_PREFIX):
        resolution = _tier(model_field[len(TIER_PREFIX) :], catalog, "tier", None)
        if resolution is None:
            raise _unknown(model_field)
        return resolution
    head, slash, tail = model_field.partition("/")
    if slash:
        if catalog.connection(head) is not None:
            target = catalog.model(head, tail)
            if target is not None:
                return _pinned((target,), catalog)
        if catalog.is_provider_kind(head):
            targets = catalog.by_kind(head, tail)
            if targets:
                return _pinned(targets, catalog)
    return _bare(model_field, catalog)
