"""Models past their provider's retirement date, so render can warn before requests to them fail. Pure.

The price catalog (genai-prices) marks some models ``deprecated`` but carries no dates, so the dates
are kept here, per provider kind. Source: Anthropic's model deprecations page
(https://docs.anthropic.com/en/docs/about-claude/model-deprecations), the same dates the anthropic
Python SDK 2.10.0 warns with (``DEPRECATED_MODELS``); checked 2026-12-06. Dates apply to Anthropic's
own API (Bedrock and Vertex keep their own schedules). Add a provider's dates here as it publishes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from types import MappingProxyType

_ANTHROPIC = {
    **dict.fromkeys(
        (
            "claude-1.0",
            "claude-1.1",
            "claude-1.2",
            "claude-1.3",
            "claude-1.3-100k",
            "claude-instant-1.0",
            "claude-instant-1.1",
            "claude-instant-1.1-100k",
            "claude-instant-1.2",
        ),
        date(2024, 11, 6),
    ),
    **dict.fromkeys(("claude-2.0", "claude-2.1", "claude-3-sonnet-20240229"), date(2025, 7, 21)),
    **dict.fromkeys(("claude-3-5-sonnet-20240620", "claude-3-5-sonnet-20241022"), date(2025, 10, 22)),
    "claude-3-opus-20240229": date(2026, 1, 5),
    **dict.fromkeys(
        (
            "claude-3-7-sonnet-latest",
            "claude-3-7-sonnet-20250219",
            "claude-3-5-haiku-latest",
            "claude-3-5-haiku-20241022",
        ),
        date(2026, 2, 19),
    ),
    **dict.fromkeys(
        ("claude-opus-4-0", "claude-opus-4-20250514", "claude-sonnet-4-0", "claude-sonnet-4-20250514"),
        date(2026, 6, 15),
    ),
    "claude-mythos-preview": date(2026, 6, 30),
    **dict.fromkeys(("claude-sonnet-4-5", "claude-sonnet-4-5-20250929"), date(2026, 11, 30)),
}
RETIREMENTS: Mapping[str, Mapping[str, date]] = MappingProxyType({"anthropic": MappingProxyType(_ANTHROPIC)})


def retirement_warning(kind: str, model: str, now: datetime, catalog_deprecated: bool) -> str | None:
    """Why declaring ``model`` on a ``kind`` connection is a mistake at ``now``, or None.

    Past a known retirement date: requests to it fail. Else, when the price catalog marks it
    deprecated: it still works, but not for long.
    """
    retired = RETIREMENTS.get(kind, {}).get(model)
    if retired is not None and now.date() >= retired:
        return (
            f"model {model} was retired by {kind} on {retired.isoformat()}: requests to it fail; "
            "declare a current model"
        )
    if retired is not None:
        return f"model {model} is deprecated by {kind} and retires on {retired.isoformat()}"
    if catalog_deprecated:
        return f"model {model} is deprecated by its provider (price catalog); plan to replace it"
    return None
