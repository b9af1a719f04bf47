"""The operator's RBAC is exactly what it needs (asserted as lists); tenants can read but not write."""

from __future__ import annotations

from typing import Any

NAMESPACE = "sluicegate-system"
SERVICE_ACCOUNT = {"kind": "ServiceAccount", "name": "sluicegate-operator", "namespace": NAMESPACE}
CRS = ["providerconnections", "routingtiers", "budgetpolicies"]
STATUSES = [f"{cr}/status" for cr in CRS]


def _rule(
    groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None
) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


CLUSTER_RULES = [
    _rule(["apiextensions.k8s.io"], ["customresourcedefinitions"], ["get", "list", "watch"]),
    _rule([""], ["namespaces"], ["get", "list", "watch"]),
    _rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
]
CLUSTER_PEERING = _rule(["kopf.dev"], ["clusterkopfpeerings"], ["get", "list", "watch", "patch"])
WORKLOAD_RULES = [
    _rule(["sluicegate.io"], CRS, ["get", "list", "watch", "patch"]),
    _rule(["sluicegate.io"], STATUSES, ["get", "patch"]),
    _rule([""], ["secrets"], ["get", "list", "watch", "create"]),
    _rule([""], ["secrets"], ["patch", "delete"], ["sluicegate-config"]),
    _rule([""], ["pods"], ["get", "list"]),
    _rule([""], ["events"], ["create"]),
    _rule(["events.k8s.io"], ["events"], ["create"]),
]
NAMESPACED_PEERING = _rule(["kopf.dev"], ["kopfpeerings"], ["get", "list", "watch", "patch"])
OWN_NAMESPACE_RULES = [
    _rule([""], ["secrets"], ["get", "list", "watch", "create", "patch", "delete"]),
    _rule([""], ["configmaps"], ["create"]),
    _rule([""], ["configmaps"], ["get", "patch"], ["sluicegate-signing-public"]),
]


def _operator_grants(manifest: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(binding kind, binding namespace or '', rule) for every rule bound to the operator's ServiceAccount."""
    roles = {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in manifest.objects
    }
    grants = []
    for binding in manifest.find("ClusterRoleBinding") + manifest.find("RoleBinding"):
        if SERVICE_ACCOUNT not in binding["subjects"]:
            continue
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace", "")
        role = roles[(ref["kind"], "" if ref["kind"] == "ClusterRole" else namespace, ref["name"])]
        grants += [(binding["kind"], namespace, rule) for rule in role["rules"]]
    return grants


def test_cluster_wide_operator_rbac_is_exactly_what_it_needs(render: Any) -> None:
    grants = _operator_grants(render())
    cluster = [rule for kind, _, rule in grants if kind == "ClusterRoleBinding"]
    own = [rule for kind, ns, rule in grants if kind == "RoleBinding" and ns == NAMESPACE]
    assert cluster == [*CLUSTER_RULES, CLUSTER_PEERING, *WORKLOAD_RULES]
    assert own == OWN_NAMESPACE_RULES
    assert len(grants) == len(cluster) + len(own)


def test_namespaced_operator_gets_workload_rights_only_in_the_namespaces_it_serves(render: Any) -> None:
    grants = _operator_grants(render({"operator": {"watchNamespaces": ["team-a", "team-b"]}}))
    cluster = [rule for kind, _, rule in grants if kind == "ClusterRoleBinding"]
    assert cluster == CLUSTER_RULES
    for namespace in ["team-a", "team-b"]:
        assert [rule for _, ns, rule in grants if ns == namespace] == [*WORKLOAD_RULES, NAMESPACED_PEERING]
    # The operator also watches its own namespace (it adds it to the namespaces it is given).
    own = [rule for _, ns, rule in grants if ns == NAMESPACE]
    assert own == [*WORKLOAD_RULES, NAMESPACED_PEERING, *OWN_NAMESPACE_RULES]
    assert {ns for _, ns, _ in grants} == {"", "team-a", "team-b", NAMESPACE}


def test_operator_roles_use_no_wildcards_nor_privilege_verbs(render: Any) -> None:
    for _, _, rule in _operator_grants(render()):
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field]
        assert not {"deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])


def test_operator_may_change_or_delete_no_app_secret_other_than_the_sealed_config(render: Any) -> None:
    cluster_secret_writes = [
        rule
        for kind, _, rule in _operator_grants(render())
        if kind == "ClusterRoleBinding"
        and "secrets" in rule["resources"]
        and {"update", "patch", "delete"} & set(rule["verbs"])
    ]
    assert cluster_secret_writes == [_rule([""], ["secrets"], ["patch", "delete"], ["sluicegate-config"])]


def test_viewer_role_reads_sluicegate_resources_and_writes_nothing(render: Any) -> None:
    viewer = render().one("ClusterRole", "sluicegate-viewer")
    readable = [r for cr in CRS for r in (cr, f"{cr}/status")]
    assert viewer["rules"] == [_rule(["sluicegate.io"], readable, ["get", "list", "watch"])]
    labels = viewer["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    off = render({"tenantRoles": {"aggregateViewerToDefaultRoles": False}}).one(
        "ClusterRole", "sluicegate-viewer"
    )
    assert not [
        k for k in off["metadata"]["labels"] if k.startswith("rbac.authorization.k8s.io/aggregate-to")
    ]


def test_admin_role_lets_the_platform_team_edit_specs_but_not_forge_status(render: Any) -> None:
    admin = render().one("ClusterRole", "sluicegate-admin")
    assert admin["rules"] == [
        _rule(
            ["sluicegate.io"],
            CRS,
            ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"],
        ),
        _rule(["sluicegate.io"], STATUSES, ["get", "list", "watch"]),
    ]
    assert not [
        k for k in admin["metadata"]["labels"] if k.startswith("rbac.authorization.k8s.io/aggregate-to")
    ]


def test_no_role_in_the_chart_grants_app_teams_write_access_through_aggregation(render: Any) -> None:
    for role in render().find("ClusterRole"):
        aggregated = [
            k for k in role["metadata"]["labels"] if k.startswith("rbac.authorization.k8s.io/aggregate-to")
        ]
        if aggregated:
            verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
            assert verbs <= {"get", "list", "watch"}, role["metadata"]["name"]
