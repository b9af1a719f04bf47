"""Who a request is for: the Pod's own identity first, then request headers. Pure.

Reads ``X-Sluicegate-*`` headers and the Portkey / TOLVYN migration aliases into one value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

DIMENSIONS = ("team", "service", "feature", "user", "endCustomer")
_HEADER_OF = {
    "team": "team",
    "service": "service",
    "feature": "feature",
    "user": "user",
    "end-customer": "endCustomer",
}
_MAX_TAGS = 32
_MAX_VALUE = 256


@dataclass(frozen=True, slots=True)
class PodIdentity:
    """Set by the webhook through the downward API; the app cannot change it."""

    namespace: str = "default"
    workload: str = ""
    service_account: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


class Attribution(msgspec.Struct, frozen=True, gc=False):
    pod: PodIdentity
    dimensions: Mapping[str, str]
    tags: Mapping[str, str]

    def dimension(self, name: str) -> str | None:
        return self.dimensions.get(name)


def _clean(value: str) -> str:
    return value.strip()[:_MAX_VALUE]


def _json_tags(raw: str, prefix: str) -> dict[str, str]:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    out: dict[str, str] = {}
    for key, value in parsed.items():
        if isinstance(value, str | int | float | bool):
            out[f"{prefix}{_clean(str(key))}"] = _clean(str(value))
    return out


# (header, dimension), X-Sluicegate-* last: it wins over its TOLVYN alias.
_DIMENSION_HEADERS = tuple(
    (vendor + suffix, dim) for vendor in ("x-tolvyn-", "x-sluicegate-") for suffix, dim in _HEADER_OF.items()
)


def attribute(pod: PodIdentity, headers: Mapping[str, str]) -> Attribution:
    """Attribution for a request; ``headers`` keys are lower-case."""
    dimensions: dict[str, str] = {}
    tags: dict[str, str] = {}
    for header, dim in _DIMENSION_HEADERS:
        value = headers.get(header)
        if value:
            dimensions[dim] = _clean(value)
    for header, tag in (("x-tolvyn-agent", "tolvyn_agent"), ("x-tolvyn-environment", "tolvyn_environment")):
        value = headers.get(header)
        if value:
            tags[tag] = _clean(value)
    trace = headers.get("x-portkey-trace-id")
    if trace:
        tags["portkey_trace_id"] = _clean(trace)
    metadata = headers.get("x-portkey-metadata")
    if metadata:
        tags.update(_json_tags(metadata, "portkey_"))
    own = headers.get("x-sluicegate-tags")
    if own:
        tags.update(_json_tags(own, ""))
    if len(tags) > _MAX_TAGS:
        tags = dict(sorted(tags.items())[:_MAX_TAGS])
    return Attribution(pod=pod, dimensions=dimensions, tags=tags)
