"""The model catalog: an index over one config's connections, models and tiers. Pure.

Built once per config (never per request); it only looks things up and performs no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import msgspec

from sluicegate_contract.modelnames import AUTO, TIER_PREFIX
from sluicegate_contract.schema import Candidate, Config, Model, Provider, ProviderKind, Tier

if TYPE_CHECKING:
    from .resolve import Resolution

MAX_MODEL_ID_CHARS = 256
MODEL_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/@-")


def model_id_problem(text: str) -> str | None:
    """Why ``text`` cannot be a model id a client may send, or None when it can.

    Allowed: 1 to 256 characters of ``[A-Za-z0-9._:/@-]``, no ``..`` and no empty part around a
    ``/`` (provider model ids may hold slashes: ``together/meta-llama/Llama-3.3-70B-Instruct``).
    Everything else (``#``, ``?``, ``%``, whitespace, control characters, non-ASCII) is refused, so a
    name can never reshape an upstream URL.
    """
    if not text:
        return "the model name is empty"
    if len(text) > MAX_MODEL_ID_CHARS:
        return f"the model name is longer than {MAX_MODEL_ID_CHARS} characters"
    if not set(text) <= MODEL_ID_CHARS:
        return "the model name may only contain letters, digits and . _ : / @ -"
    if ".." in text:
        return "the model name may not contain '..'"
    if "/" in text and "" in text.split("/"):
        return "the model name has an empty part around '/'"
    return None


@dataclass(frozen=True, slots=True)
class Target:
    """One thing a request can be sent to: a connection and the provider's own model name."""

    connection: str
    provider: ProviderKind
    model: str
    spec: Model
    weight: int = 1

    @property
    def key(self) -> tuple[str, str]:
        """The health key: (connection, provider model name)."""
        return (self.connection, self.model)


def _model_entry(model_id: str, owned_by: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owned_by}


def anthropic_model_entry(model_id: str, target: Target | None) -> dict[str, object]:
    """A model as Anthropic's Models API describes it (release date unknown: the epoch, as it allows)."""
    entry: dict[str, object] = {
        "type": "model",
        "id": model_id,
        "display_name": model_id,
        "created_at": "1970-01-01T00:00:00Z",
        "lifecycle": "active",
    }
    if target is not None and target.spec.context_window is not None:
        entry["max_input_tokens"] = target.spec.context_window
    if target is not None and target.spec.max_output_tokens is not None:
        entry["max_tokens"] = target.spec.max_output_tokens
    return entry


class ModelCatalog:
    """Lookups over one config. Construct with ``from_config``.

    ``usable(connection)`` says whether a connection can be used at all under this config (for
    example its key could be unsealed). Unusable connections stay known, so naming one of their
    models still resolves (and then fails with 503 in the pipeline) rather than turning into a
    404, but they are left out of tier candidates, of ``auto`` and of the listing.
    """

    def __init__(
        self,
        providers: dict[str, Provider],
        models: dict[tuple[str, str], Target],
        bare: dict[str, tuple[Target, ...]],
        tiers: dict[str, Tier],
        tier_targets: dict[str, tuple[Target, ...]],
        usable_connections: frozenset[str],
    ) -> None:
        self._providers = providers
        self._models = models
        self._bare = bare
        self._tiers = tiers
        self._tier_targets = tier_targets
        self._usable = usable_connections
        self._kinds = frozenset(k for p in providers.values() for k in (p.provider, p.declared_kind) if k)
        self._by_rank = tuple(sorted(tiers.values(), key=lambda t: (t.rank, t.name)))
        # Names ``resolve`` resolved under this config (``auto`` aside), kept by it: a name means the
        # same under one config, and only names the config serves resolve, so it stays small.
        self.resolutions: dict[str, Resolution] = {}

    @classmethod
    def from_config(cls, config: Config, usable: Callable[[str], bool] | None = None) -> ModelCatalog:
        providers: dict[str, Provider] = {}
        models: dict[tuple[str, str], Target] = {}
        bare_lists: dict[str, list[Target]] = {}
        for provider in config.providers:
            if provider.name in providers:
                continue  # the operator never writes duplicates; the first one wins
            providers[provider.name] = provider
            # Provider names first, then aliases: within one connection a name beats an alias.
            for model in provider.models:
                target = Target(provider.name, provider.provider, model.name, model)
                models.setdefault((provider.name, model.name), target)
            for model in provider.models:
                if model.alias:
                    target = models[(provider.name, model.name)]
                    models.setdefault((provider.name, model.alias), target)
        for (_, name), target in models.items():
            bare_lists.setdefault(name, []).append(target)
        usable_connections = frozenset(n for n in providers if usable is None or usable(n))
        tiers: dict[str, Tier] = {}
        tier_targets: dict[str, tuple[Target, ...]] = {}
        for tier in config.tiers:
            if tier.name in tiers:
                continue
            kept = _tier_targets(tier, models, usable_connections)
            tier_targets[tier.name] = kept
            candidates = tuple(
                Candidate(connection=t.connection, model=t.model, weight=t.weight) for t in kept
            )
            tiers[tier.name] = msgspec.structs.replace(tier, candidates=candidates)
        bare = {name: tuple(entries) for name, entries in bare_lists.items()}
        return cls(providers, models, bare, tiers, tier_targets, usable_connections)

    # -- connections and models -------------------------------------------------------------

    def connection(self, name: str) -> Provider | None:
        return self._providers.get(name)

    def is_usable(self, connection: str) -> bool:
        return connection in self._usable

    def is_provider_kind(self, kind: str) -> bool:
        """True when at least one connection is of provider kind ``kind`` (e.g. ``openai``)."""
        return kind in self._kinds

    def model(self, connection: str, name: str) -> Target | None:
        """The model ``name`` (provider name or alias) on ``connection``."""
        return self._models.get((connection, name))

    def by_kind(self, kind: str, name: str) -> tuple[Target, ...]:
        """Every connection of provider kind ``kind`` offering ``name``, in config order."""
        found: list[Target] = []
        for provider in self._providers.values():
            if kind in (provider.provider, provider.declared_kind):
                target = self._models.get((provider.name, name))
                if target is not None and target not in found:
                    found.append(target)
        return tuple(found)

    def bare(self, name: str) -> tuple[Target, ...]:
        """The targets a bare name (provider name or alias) means: none, one, or several (ambiguous)."""
        return self._bare.get(name, ())

    # -- tiers ------------------------------------------------------------------------------

    def tier(self, name: str) -> Tier | None:
        """The tier, its candidates reduced to those that exist on usable connections."""
        return self._tiers.get(name)

    def tier_targets(self, name: str) -> tuple[Target, ...]:
        """The tier's candidates as targets, in declared order, with their weights."""
        return self._tier_targets.get(name, ())

    def tiers_by_rank(self) -> tuple[Tier, ...]:
        """Every tier, lightest first (rank, then name)."""
        return self._by_rank

    def lighter_tiers(self, rank: int) -> tuple[Tier, ...]:
        """Tiers strictly lighter than ``rank`` that have a candidate, lightest first."""
        return tuple(t for t in self._by_rank if t.rank < rank and t.candidates)

    def auto_available(self) -> bool:
        """True when ``auto`` can pick some tier (an enabled ``spec.auto`` and a usable candidate)."""
        return any(t.auto is not None and t.auto.enabled and t.candidates for t in self._by_rank)

    # -- GET /v1/models ---------------------------------------------------------------------

    def listing(self) -> list[dict[str, object]]:
        """OpenAI model objects for what a client can ask for and that can currently be served.

        ``auto`` (when some tier admits auto), ``tier:<name>`` for tiers with a usable candidate
        (by rank), ``<connection>/<model>`` for every model and alias on a usable connection,
        then bare names that mean exactly one model. Ids a client could not send are left out.
        """
        return [_model_entry(i, owner) for i, owner, _ in self.listed()]

    def anthropic_listing(self) -> list[dict[str, object]]:
        """The same ids as ``listing``, as Anthropic's Models API entries."""
        return [anthropic_model_entry(i, target) for i, _, target in self.listed()]

    def listed(self) -> list[tuple[str, str, Target | None]]:
        """(id, owner, the model it names if exactly one) for every id ``listing`` shows, in order."""
        entries: list[tuple[str, str, Target | None]] = []
        if self.auto_available():
            entries.append((AUTO, "sluicegate", None))
        entries.extend(
            (f"{TIER_PREFIX}{t.name}", "sluicegate", None)
            for t in self._by_rank
            if t.candidates and model_id_problem(f"{TIER_PREFIX}{t.name}") is None
        )
        for (connection, name), target in self._models.items():
            model_id = f"{connection}/{name}"
            if connection in self._usable and model_id_problem(model_id) is None:
                entries.append((model_id, target.provider, target))
        for name, targets in self._bare.items():
            if (
                len(targets) == 1
                and targets[0].connection in self._usable
                and name != AUTO
                and not name.startswith(TIER_PREFIX)
                and model_id_problem(name) is None
            ):
                entries.append((name, targets[0].provider, targets[0]))
        return entries


def _tier_targets(
    tier: Tier, models: dict[tuple[str, str], Target], usable: frozenset[str]
) -> tuple[Target, ...]:
    """The tier's candidates that exist on usable connections, first of each (connection, model)."""
    kept: list[Target] = []
    seen: set[tuple[str, str]] = set()
    for candidate in tier.candidates:
        target = models.get((candidate.connection, candidate.model))
        if target is None or candidate.connection not in usable or target.key in seen:
            continue
        seen.add(target.key)
        kept.append(replace(target, weight=candidate.weight))
    return tuple(kept)
