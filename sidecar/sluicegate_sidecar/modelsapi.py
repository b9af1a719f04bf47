"""``GET /v1/models`` and ``/v1/models/{id}`` in each SDK's own shape: OpenAI's model objects, or
Anthropic's paged ``{"data", "has_more", "first_id", "last_id"}``. Pure: lookups over the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import bad_request
from .routing.autotier import features_of
from .routing.catalog import ModelCatalog, anthropic_model_entry
from .routing.resolve import InvalidModel, UnknownModel, resolve

ANTHROPIC_DEFAULT_LIMIT = 20  # Anthropic's own default and bounds for ?limit=
ANTHROPIC_MAX_LIMIT = 1000


def anthropic_page(entries: list[dict[str, object]], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of Anthropic model entries, as ``?limit=&after_id=&before_id=`` select it."""
    raw_limit = query.get("limit", str(ANTHROPIC_DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= ANTHROPIC_MAX_LIMIT:
        raise bad_request(f"limit: must be between 1 and {ANTHROPIC_MAX_LIMIT}.", param="limit")
    limit = int(raw_limit)
    ids = [str(e["id"]) for e in entries]
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None:
        start = ids.index(after) + 1 if after in ids else len(ids)
        page, more = entries[start : start + limit], start + limit < len(entries)
    elif before is not None:
        end = ids.index(before) if before in ids else 0
        page, more = entries[max(0, end - limit) : end], end - limit > 0
    else:
        page, more = entries[:limit], limit < len(entries)
    return {
        "data": page,
        "has_more": more,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


def find_model(catalog: ModelCatalog, model_id: str, *, anthropic: bool) -> dict[str, object] | None:
    """The model object for ``model_id``: an id ``GET /v1/models`` lists, or any other name a request
    may send that resolves to one model (``openai/gpt-4o`` by provider kind); None if unknown."""
    for listed_id, owner, target in catalog.listed():
        if listed_id == model_id:
            if anthropic:
                return anthropic_model_entry(model_id, target)
            return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}
    try:
        resolution = resolve(model_id, catalog, lambda: features_of({}, 0))
    except (InvalidModel, UnknownModel):
        return None
    targets = {(t.provider, t.model) for t in resolution.candidates}
    if not resolution.pinned or len(targets) != 1:
        return None
    target = resolution.candidates[0]
    if anthropic:
        return anthropic_model_entry(model_id, target)
    return {"id": model_id, "object": "model", "created": 0, "owned_by": target.provider}
