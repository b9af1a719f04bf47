"""The examples apply cleanly and fit together; every invalid sample is refused with its declared message."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.support.crdvalidate import (
    CEL_SKIPPED,
    CrdIndex,
    load_crds,
    load_documents,
    validate,
    version_schema,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FILES = sorted((ROOT / "examples").glob("*.yaml"))
INVALID_FILES = sorted((ROOT / "examples" / "invalid").glob("*.yaml"))
DECLARATION = re.compile(r"\A# invalid: (?P<fragment>.+)\n")


@pytest.fixture(scope="module")
def crds() -> CrdIndex:
    return load_crds(ROOT / "crds")


def example_documents() -> list[dict[str, Any]]:
    return [doc for path in EXAMPLE_FILES for doc in load_documents(path)]


def custom_resources(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in example_documents() if doc["kind"] == kind}


def example_id(doc: Mapping[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("doc", [d for d in example_documents() if d["kind"] != "Secret"], ids=example_id)
def test_example_custom_resource_validates_clean(doc: dict[str, Any], crds: CrdIndex) -> None:
    assert validate(doc, crds) == []


@pytest.mark.parametrize("doc", [d for d in example_documents() if d["kind"] == "Secret"], ids=example_id)
def test_example_secret_is_a_valid_kubernetes_secret(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_examples_set_no_namespace_so_kubectl_apply_n_chooses_it() -> None:
    docs = example_documents()
    assert [example_id(d) for d in docs if "namespace" in d["metadata"]] == []
    assert {d["kind"] for d in docs} == {"Secret", "ProviderConnection", "RoutingTier", "BudgetPolicy"}


def test_example_names_are_the_documented_set() -> None:
    assert sorted(custom_resources("ProviderConnection")) == ["anthropic", "gemini", "mock", "openai"]
    assert sorted(custom_resources("RoutingTier")) == ["light", "local", "premium", "standard"]
    assert sorted(custom_resources("BudgetPolicy")) == ["namespace-monthly", "per-customer-daily"]


def test_example_secrets_hold_distinct_obvious_placeholders() -> None:
    values = [v for s in custom_resources("Secret").values() for v in s["stringData"].values()]
    assert len(values) == len(set(values)) == 4
    assert all("REPLACE-ME" in value for value in values)


def test_every_secret_reference_in_the_examples_names_an_example_secret_and_key() -> None:
    secrets = {name: set(s["stringData"]) for name, s in custom_resources("Secret").items()}
    refs = [
        (c["spec"]["apiKeySecretRef"]["name"], c["spec"]["apiKeySecretRef"].get("key", "apiKey"))
        for c in custom_resources("ProviderConnection").values()
        if "apiKeySecretRef" in c["spec"]
    ]
    refs += [
        (hook["urlSecretRef"]["name"], hook["urlSecretRef"].get("key", "url"))
        for policy in custom_resources("BudgetPolicy").values()
        for hook in policy["spec"].get("alerts", {}).get("webhooks", [])
    ]
    assert len(refs) == 4
    assert [ref for ref in refs if ref[1] not in secrets.get(ref[0], set())] == []


def test_every_tier_candidate_names_an_example_connection_and_one_of_its_models() -> None:
    offered = {
        (name, model["name"])
        for name, conn in custom_resources("ProviderConnection").items()
        for model in conn["spec"]["models"]
    }
    wanted = [
        (tier_name, c["connection"], c["model"])
        for tier_name, tier in custom_resources("RoutingTier").items()
        for c in tier["spec"]["candidates"]
    ]
    assert [w for w in wanted if w[1:] not in offered] == []
    local = custom_resources("RoutingTier")["local"]["spec"]
    assert {c["connection"] for c in local["candidates"]} == {"mock"}
    assert local["auto"]["enabled"] is False


def test_budget_downgrade_targets_an_example_tier() -> None:
    tiers = custom_resources("RoutingTier")
    targets = [
        p["spec"]["downgradeTo"]
        for p in custom_resources("BudgetPolicy").values()
        if "downgradeTo" in p["spec"]
    ]
    assert targets == ["light"]
    assert all(t in tiers for t in targets)


def declared_fragment(path: Path) -> str:
    match = DECLARATION.match(path.read_text(encoding="utf-8"))
    assert match, f"{path.name} must start with '# invalid: <expected message fragment>'"
    return match["fragment"].strip()


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.name)
def test_invalid_sample_is_refused_with_its_declared_message_and_nothing_else(
    path: Path, crds: CrdIndex
) -> None:
    (doc,) = load_documents(path)
    errors = [e for e in validate(doc, crds) if e != CEL_SKIPPED]
    assert len(errors) == 1, errors
    assert declared_fragment(path) in errors[0]


def test_there_is_an_invalid_sample_for_every_cel_rule(crds: CrdIndex) -> None:
    fragments = [declared_fragment(path) for path in INVALID_FILES]
    messages = set()
    for crd in crds.values():
        nodes = [version_schema(crd, "v1alpha1")]
        while nodes:
            node = nodes.pop()
            messages |= {rule["message"] for rule in node.get("x-kubernetes-validations", [])}
            nodes += [*node.get("properties", {}).values(), *[node[k] for k in ("items",) if k in node]]
    assert len(messages) >= 9
    assert [m for m in messages if not any(m[:40] in f for f in fragments)] == []


@pytest.mark.parametrize(
    "fragment",
    [
        "baseURL is required for provider azure-openai and openai-compatible",
        "apiKeySecretRef is required for every provider except mock",
        "downgradeTo (the name of a lighter RoutingTier) is required",
        "each alert threshold must be a fraction of the cap in (0, 1]",
        "spec.limits[0].amountUSD: Invalid value: 0: must be greater than 0",
        'unknown field "spec.colour"',
        'spec.rank: Invalid value: "high": must be of type integer',
        'spec.provider: Unsupported value: "bedrock"',
        "gemini and azure-openai model names cannot contain '/'",
        "each window (day, week, month) may appear at most once in limits",
        "azure is only allowed when provider is azure-openai",
        "spec.mock.failureRate: Invalid value: 2: must be less than or equal to 1",
    ],
)
def test_the_required_invalid_cases_each_have_a_sample(fragment: str) -> None:
    assert any(fragment in declared_fragment(path) for path in INVALID_FILES)


CONDITION = {
    "type": "Ready",
    "status": "True",
    "reason": "Sealed",
    "message": "",
    "lastTransitionTime": "2026-11-23T04:00:00Z",
    "observedGeneration": 1,
}
STATUSES = {
    ("ProviderConnection", "openai"): {
        "observedGeneration": 1,
        "conditions": [CONDITION],
        "keyFingerprint": "1a2b3c4d",
        "models": [
            {
                "name": "gpt-4o-mini",
                "priced": True,
                "priceSource": "catalog",
                "inputPerMTok": "0.15",
                "outputPerMTok": "0.6",
            },
            {"name": "gpt-4o", "priced": False},
        ],
    },
    ("RoutingTier", "light"): {
        "observedGeneration": 1,
        "conditions": [CONDITION],
        "candidateCount": 3,
        "candidates": [{"connection": "openai", "model": "gpt-4.1-nano", "ready": True}],
        "notReady": ["anthropic/claude-haiku-4-5"],
    },
    ("BudgetPolicy", "namespace-monthly"): {
        "observedGeneration": 1,
        "conditions": [CONDITION],
        "verdict": "ALLOW",
        "lastAlertThreshold": 0.5,
        "windows": [
            {
                "window": "month",
                "spentUSD": 251.5,
                "reservedUSD": 0.25,
                "remainingUSD": 248.25,
                "limitUSD": 500,
                "verdict": "ALLOW",
                "windowStart": "2026-11-01T00:00:00Z",
                "windowEnd": "2026-12-01T00:00:00Z",
            }
        ],
    },
}


@pytest.mark.parametrize("key", sorted(STATUSES), ids=lambda k: "/".join(k))
def test_a_status_shaped_as_the_operator_writes_it_validates(key: tuple[str, str], crds: CrdIndex) -> None:
    doc = {**custom_resources(key[0])[key[1]], "status": STATUSES[key]}
    assert validate(doc, crds) == []
    doc["status"] = {**STATUSES[key], "conditions": [{**CONDITION, "status": "Yes"}]}
    assert validate(doc, crds)[0].startswith('status.conditions[0].status: Unsupported value: "Yes"')
