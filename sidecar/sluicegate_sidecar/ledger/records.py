"""The sidecar's values as ledger entries, and entries back as budget charges (restoring spend). Pure."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sluicegate_contract.ledger import Entry, EntryAttribution, EntryReportedUsage, EntryUsage, parse_time

from ..attribution import Attribution
from ..budget import Charge
from ..providers.base import ReportedUsage, Usage


def entry_attribution(attribution: Attribution) -> EntryAttribution:
    dims = attribution.dimensions
    pod = attribution.pod
    return EntryAttribution(
        namespace=pod.namespace,
        workload=pod.workload,
        service_account=pod.service_account,
        team=dims.get("team"),
        service=dims.get("service"),
        feature=dims.get("feature"),
        user=dims.get("user"),
        end_customer=dims.get("endCustomer"),
        tags=dict(attribution.tags),
    )


def entry_usage(usage: Usage | None) -> EntryUsage | None:
    if usage is None:
        return None
    return EntryUsage(
        input=usage.input_tokens,
        output=usage.output_tokens,
        cached=usage.cached_input_tokens,
        cache_write=usage.cache_write_tokens,
    )


def entry_reported_usage(reported: ReportedUsage | None) -> EntryReportedUsage | None:
    if reported is None:
        return None
    return EntryReportedUsage(
        input=reported.input_tokens,
        output=reported.output_tokens,
        cached=reported.cached_input_tokens,
        cache_write=reported.cache_write_tokens,
    )


def charges(entries: Iterable[Entry]) -> Iterator[Charge]:
    """What each entry cost and to which policies, for ``BudgetBook.restore``."""
    for entry in entries:
        attr = entry.attribution
        dims = {
            "team": attr.team,
            "service": attr.service,
            "feature": attr.feature,
            "user": attr.user,
            "endCustomer": attr.end_customer,
        }
        yield Charge(
            time=parse_time(entry.time),
            policies=entry.budget_scopes,
            dimensions={k: v for k, v in dims.items() if v},
            cost_micro_usd=entry.cost_micro_usd,
        )
