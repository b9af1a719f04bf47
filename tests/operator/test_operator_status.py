from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sluicegate_contract.schema import Model, ModelPrice, Rates
from sluicegate_operator.resourcereport import ResourceReport
from sluicegate_operator.status import Condition, build_status, merge_conditions

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def obj(generation=3, status=None):
    return {"metadata": {"name": "openai", "generation": generation}, "status": status or {}}


def conditions_of(update):
    return {c["type"]: c for c in update.fields["conditions"]}


def test_every_condition_carries_the_observed_generation():
    report = ResourceReport(
        "ProviderConnection", "openai", True, "Sealed", "sealed", key_fingerprint="1a2b3c4d"
    )
    update = build_status(report, obj(generation=7), config=None, now=T0)
    assert update.fields["observedGeneration"] == 7
    assert {c["observedGeneration"] for c in update.fields["conditions"]} == {7}
    assert set(conditions_of(update)) == {"Ready", "KeyResolved", "Sealed", "ModelsCurrent"}


def test_missing_secret_sets_key_resolved_false_with_reason_and_no_fingerprint():
    report = ResourceReport(
        "ProviderConnection", "openai", False, "SecretNotFound", "Secret 'openai-key' not found"
    )
    update = build_status(report, obj(), config=None, now=T0)
    conds = conditions_of(update)
    assert conds["Ready"]["status"] == "False"
    assert conds["KeyResolved"] == conds["KeyResolved"] | {"status": "False", "reason": "SecretNotFound"}
    assert update.fields["keyFingerprint"] is None


def test_last_transition_time_is_kept_while_the_status_is_unchanged():
    report = ResourceReport(
        "ProviderConnection", "openai", True, "Sealed", "sealed", key_fingerprint="1a2b3c4d"
    )
    first = build_status(report, obj(), config=None, now=T0)
    again = build_status(report, obj(status=dict(first.fields)), config=None, now=T1)
    assert not again.differs_from(dict(first.fields))
    assert again.transitions == ()
    assert {c["lastTransitionTime"] for c in again.fields["conditions"]} == {"2026-11-23T10:00:00Z"}


def test_a_status_change_is_a_transition_with_a_new_time():
    ok = ResourceReport("ProviderConnection", "openai", True, "Sealed", "sealed", key_fingerprint="1a2b3c4d")
    broken = ResourceReport("ProviderConnection", "openai", False, "SecretNotFound", "gone")
    first = build_status(ok, obj(), config=None, now=T0)
    second = build_status(broken, obj(status=dict(first.fields)), config=None, now=T1)
    changed = {t.condition.type: t for t in second.transitions}
    assert changed["Ready"].previous == "True" and changed["Ready"].event_type == "Warning"
    assert conditions_of(second)["Ready"]["lastTransitionTime"] == "2026-11-23T10:05:00Z"
    assert set(changed) == {"Ready", "KeyResolved", "Sealed", "ModelsCurrent"}  # ModelsCurrent: Unknown
    assert [t.condition.type for t in second.events] == ["Ready"]  # one Event, not four


def test_a_first_ready_posts_no_event_a_failure_and_its_recovery_do():
    """A first install of thousands of namespaces posts no Event per resource; a person still sees a
    resource go wrong (Warning) and come right again (Normal)."""
    ok = ResourceReport("ProviderConnection", "openai", True, "Sealed", "sealed", key_fingerprint="1a2b3c4d")
    broken = ResourceReport("ProviderConnection", "openai", False, "SecretNotFound", "gone")
    first = build_status(ok, obj(), config=None, now=T0)
    assert conditions_of(first)["Ready"]["status"] == "True" and first.events == ()
    second = build_status(broken, obj(status=dict(first.fields)), config=None, now=T1)
    assert [(t.condition.type, t.event_type) for t in second.events] == [("Ready", "Warning")]
    third = build_status(ok, obj(status=dict(second.fields)), config=None, now=T1)
    assert [(t.condition.type, t.event_type) for t in third.events] == [("Ready", "Normal")]
    tier = ResourceReport(
        "RoutingTier", "light", True, "CandidatesReady", "all ready",
        candidates=(("mock", "mock-small", True),),
    )  # fmt: skip
    assert build_status(tier, obj(), config=None, now=T0).events == ()


def test_conditions_written_by_others_are_kept():
    existing = [{"type": "BudgetSynced", "status": "True", "reason": "x", "message": ""}]
    out, _ = merge_conditions([Condition("Ready", "True", "Ok", "")], existing, generation=1, now=T0)
    assert [c["type"] for c in out] == ["Ready", "BudgetSynced"]


def test_connection_status_shows_models_with_prices_in_usd():
    model = Model(
        name="gpt-4o-mini",
        price=ModelPrice(source="catalog", base=Rates(input_per_mtok=150_000, output_per_mtok=600_000)),
    )
    report = ResourceReport(
        "ProviderConnection", "openai", True, "Sealed", "sealed", key_fingerprint="1a2b3c4d", models=(model,)
    )
    update = build_status(report, obj(), config=None, now=T0)
    assert update.fields["models"] == [
        {
            "name": "gpt-4o-mini",
            "priced": True,
            "priceSource": "catalog",
            "inputPerMTok": "0.15",
            "outputPerMTok": "0.6",
        }
    ]


def test_tier_lists_candidates_that_are_not_ready():
    report = ResourceReport(
        "RoutingTier", "light", True, "CandidatesNotReady", "not ready: openai/gpt-4.1-nano",
        candidates=(("openai", "gpt-4.1-nano", False), ("mock", "mock-small", True)),
        not_ready=("openai/gpt-4.1-nano",),
    )  # fmt: skip
    update = build_status(report, obj(), config=None, now=T0)
    assert update.fields["notReady"] == ["openai/gpt-4.1-nano"]
    assert update.fields["candidates"][0] == {"connection": "mock", "model": "mock-small", "ready": True}
    assert conditions_of(update)["CandidatesReady"]["status"] == "False"


RETIRED = (
    "model claude-3-5-haiku-20241022 was retired by anthropic on 2026-02-19: requests to it fail; "
    "declare a current model"
)


def test_a_retired_model_sets_models_current_false_and_is_announced_once_until_fixed():
    current = ResourceReport("ProviderConnection", "anthropic", True, "Sealed", "sealed")
    retired = ResourceReport("ProviderConnection", "anthropic", True, "Sealed", "sealed", warnings=(RETIRED,))
    first = build_status(current, obj(), config=None, now=T0)
    assert conditions_of(first)["ModelsCurrent"]["status"] == "True"
    assert "ModelsCurrent" not in [t.condition.type for t in first.events]  # a first True: no Event
    warned = build_status(retired, obj(status=dict(first.fields)), config=None, now=T1)
    found = conditions_of(warned)["ModelsCurrent"]
    assert (found["status"], found["reason"], found["message"]) == ("False", "ModelRetired", RETIRED)
    [event] = [t for t in warned.events if t.condition.type == "ModelsCurrent"]
    assert event.event_type == "Warning" and RETIRED in event.event_message
    again = build_status(retired, obj(status=dict(warned.fields)), config=None, now=T1)
    assert again.events == ()  # said once, not on every reconcile
    fixed = build_status(current, obj(status=dict(warned.fields)), config=None, now=T1)
    assert [(t.condition.type, t.event_type) for t in fixed.events] == [("ModelsCurrent", "Normal")]


def test_a_deprecated_model_is_named_as_such():
    report = ResourceReport(
        "ProviderConnection", "gemini", True, "Sealed", "sealed",
        warnings=("model gemini-2.0-flash is deprecated by its provider (price catalog); plan to replace it",),
    )  # fmt: skip
    found = conditions_of(build_status(report, obj(), config=None, now=T0))["ModelsCurrent"]
    assert (found["status"], found["reason"]) == ("False", "ModelDeprecated")
