"""The chart ships the repository's CRDs unchanged, plus kopf's peering CRDs.

After editing crds/, run `make sync-crds` to copy them into charts/sluicegate/crds/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "crds"
SHIPPED = REPO / "charts" / "sluicegate" / "crds"
EXPECTED = ["budgetpolicies.yaml", "providerconnections.yaml", "routingtiers.yaml"]
KOPF_PEERING = "kopf-peering.yaml"


def test_repository_holds_the_three_crds() -> None:
    assert sorted(p.name for p in SOURCE.glob("*.yaml")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_chart_crd_is_byte_identical_to_the_repository_crd(name: str) -> None:
    shipped = SHIPPED / name
    assert shipped.is_file(), f"charts/sluicegate/crds/{name} is missing: run `make sync-crds`"
    assert shipped.read_bytes() == (SOURCE / name).read_bytes(), (
        f"charts/sluicegate/crds/{name} differs from crds/{name}: run `make sync-crds`"
    )


def test_chart_ships_no_other_crds_than_the_repository_ones_and_kopf_peering() -> None:
    assert sorted(p.name for p in SHIPPED.iterdir()) == sorted([*EXPECTED, KOPF_PEERING])


def test_kopf_peering_crds_define_cluster_and_namespaced_peerings() -> None:
    docs = [d for d in yaml.safe_load_all((SHIPPED / KOPF_PEERING).read_text()) if d]
    scopes = {d["metadata"]["name"]: d["spec"]["scope"] for d in docs}
    assert scopes == {"clusterkopfpeerings.kopf.dev": "Cluster", "kopfpeerings.kopf.dev": "Namespaced"}
    for doc in docs:
        version = doc["spec"]["versions"][0]
        assert version["name"] == "v1" and version["served"] and version["storage"]
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status["x-kubernetes-preserve-unknown-fields"] is True


def test_rendered_chart_installs_every_crd_the_operator_rbac_names(render: Any) -> None:
    manifest = render()
    crds = {c["spec"]["group"]: set() for c in manifest.find("CustomResourceDefinition")}
    for crd in manifest.find("CustomResourceDefinition"):
        crds[crd["spec"]["group"]].add(crd["spec"]["names"]["plural"])
        if crd["spec"]["group"] == "sluicegate.io":
            assert all("status" in v.get("subresources", {}) for v in crd["spec"]["versions"]), crd[
                "metadata"
            ]["name"]
    for role in manifest.find("ClusterRole") + manifest.find("Role"):
        for rule in role["rules"]:
            for group in set(rule["apiGroups"]) & {"sluicegate.io", "kopf.dev"}:
                for resource in rule["resources"]:
                    assert resource.split("/")[0] in crds[group], (
                        f"{role['metadata']['name']} names {group}/{resource}"
                    )
