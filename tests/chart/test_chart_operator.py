"""The operator Deployment, its Services, PodDisruptionBudget and kopf peering objects as rendered."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluicegate_operator.injection import (
    InjectionError,
    InjectionSettings,
    sidecar_container,
    sidecar_resources,
)

NAMESPACE = "sluicegate-system"


def _container(manifest: Any) -> dict[str, Any]:
    pod = manifest.one("Deployment", "sluicegate-operator")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["operator"]
    return pod["containers"][0]


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_operator_runs_two_replicas_by_default_and_never_drops_below_them_on_rollout(render: Any) -> None:
    deployment = render().one("Deployment", "sluicegate-operator")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert render({"operator": {"replicas": 3}}).one("Deployment")["spec"]["replicas"] == 3


def test_operator_pod_is_non_root_read_only_and_cannot_escalate(render: Any) -> None:
    pod = render().one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = _container(render())["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["privileged"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert pod["serviceAccountName"] == "sluicegate-operator"


def test_operator_has_probes_on_kopf_health_and_the_webhook_port(render: Any) -> None:
    container = _container(render())
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"webhook": 9443, "keys": 8443, "health": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["tcpSocket"] == {"port": "webhook"}


def test_operator_resources_come_from_values(render: Any) -> None:
    assert _container(render())["resources"]["limits"]["memory"] == "512Mi"
    custom = {"requests": {"cpu": "250m", "memory": "300Mi"}, "limits": {"memory": "1Gi"}}
    assert _container(render({"operator": {"resources": custom}}))["resources"] == custom


def test_operator_command_line_follows_the_cluster_conventions(render: Any) -> None:
    container = _container(render({"image": {"repository": "registry.example/sluicegate", "tag": "1.2.3"}}))
    args = container["args"]
    assert container["command"] == ["sluicegate"]
    assert args[0] == "operator"
    assert "--all-namespaces" in args and "--namespace" not in args
    assert _flag(args, "--operator-namespace") == NAMESPACE
    assert _flag(args, "--webhook-port") == "9443"
    assert _flag(args, "--keyservice-port") == "8443"
    assert container["image"] == "registry.example/sluicegate:1.2.3"
    assert _flag(args, "--sidecar-image") == container["image"]


def test_tls_files_named_on_the_command_line_are_mounted_from_the_tls_secrets(render: Any) -> None:
    manifest = render()
    pod = manifest.one("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    for flag, secret in [
        ("--webhook-cert", "sluicegate-webhook-tls"),
        ("--webhook-key", "sluicegate-webhook-tls"),
        ("--keyservice-cert", "sluicegate-keys-tls"),
        ("--keyservice-key", "sluicegate-keys-tls"),
    ]:
        path = _flag(container["args"], flag)
        directory, _, filename = path.rpartition("/")
        assert secrets[mounts[directory]] == secret
        assert filename in manifest.one("Secret", secret)["data"]


def test_watched_namespaces_become_namespace_flags(render: Any) -> None:
    args = _container(render({"operator": {"watchNamespaces": ["team-a", "team-b"]}}))["args"]
    assert "--all-namespaces" not in args
    assert [args[i + 1] for i, a in enumerate(args) if a == "--namespace"] == ["team-a", "team-b"]


def test_the_alert_webhook_allow_list_and_cluster_ranges_become_operator_flags(render: Any) -> None:
    assert "--alert-webhook-allow" not in _container(render())["args"]  # default: public https only
    values = {
        "alertWebhooks": {"allow": ["*.corp.example", "10.20.0.0/16"], "clusterCIDRs": ["10.96.0.0/12"]}
    }
    args = _container(render({"operator": values}))["args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--alert-webhook-allow"] == [
        "*.corp.example",
        "10.20.0.0/16",
    ]
    assert _flag(args, "--cluster-cidr") == "10.96.0.0/12"


def test_operator_gets_its_peering_identity_and_the_sidecar_defaults(render: Any) -> None:
    sidecar = {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}
    env = {e["name"]: e for e in _container(render({"sidecar": {"resources": sidecar}}))["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert json.loads(env["SLUICEGATE_SIDECAR_RESOURCES"]["value"]) == sidecar


def _injected_resources(operator_env: list[dict[str, Any]], annotations: dict[str, str]) -> Any:
    environ = {e["name"]: e["value"] for e in operator_env if "value" in e}
    settings = InjectionSettings(image="x:1", version="1", resources=sidecar_resources(environ))
    pod = {"metadata": {"name": "web", "annotations": annotations}, "spec": {"containers": []}}
    return sidecar_container(pod, settings, "{}")["resources"]


def test_the_charts_sidecar_resources_are_what_the_operator_injects(render: Any) -> None:
    sidecar = {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}
    env = _container(render({"sidecar": {"resources": sidecar}}))["env"]
    assert _injected_resources(env, {}) == sidecar
    defaults = _container(render())["env"]  # the chart's own defaults reach the Pod too
    assert _injected_resources(defaults, {}) == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    # A Pod's annotations still win: memory is its request and its limit.
    assert _injected_resources(env, {"sluicegate.io/cpu": "300m", "sluicegate.io/memory": "1Gi"}) == {
        "requests": {"cpu": "300m", "memory": "1Gi"},
        "limits": {"memory": "1Gi"},
    }


@pytest.mark.parametrize(
    "value",
    ["not json", '{"requests": {"cpu": "lots"}}', '{"requests": {"gpu": "1"}}', '{"request": {}}', "[]"],
)
def test_an_unusable_sidecar_resources_value_stops_the_operator_with_the_variables_name(value: str) -> None:
    with pytest.raises(InjectionError, match="SLUICEGATE_SIDECAR_RESOURCES"):
        sidecar_resources({"SLUICEGATE_SIDECAR_RESOURCES": value})


def test_services_route_to_the_operator_pods_on_the_conventional_ports(render: Any) -> None:
    manifest = render()
    pod_labels = manifest.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    for name, target in [("sluicegate-webhook", "webhook"), ("sluicegate-keys", "keys")]:
        service = manifest.one("Service", name)
        assert service["metadata"]["namespace"] == NAMESPACE
        assert service["spec"]["ports"] == [
            {"name": "https", "port": 443, "targetPort": target, "protocol": "TCP"}
        ]
        assert service["spec"]["selector"].items() <= pod_labels.items()


def test_disruption_budget_keeps_a_replica_serving_during_drains(render: Any) -> None:
    manifest = render()
    pdb = manifest.one("PodDisruptionBudget", "sluicegate-operator")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == manifest.one("Deployment")["spec"]["selector"]


def test_replicas_spread_over_nodes_unless_affinity_is_given(render: Any) -> None:
    affinity = render().one("Deployment")["spec"]["template"]["spec"]["affinity"]
    assert "podAntiAffinity" in affinity
    custom = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["platform"]}]}]}}}  # fmt: skip
    assert (
        render({"operator": {"affinity": custom}}).one("Deployment")["spec"]["template"]["spec"]["affinity"]
        == custom
    )


def test_a_cluster_wide_operator_peers_through_one_cluster_peering(render: Any) -> None:
    manifest = render()
    assert manifest.one("ClusterKopfPeering", "sluicegate")
    assert manifest.find("KopfPeering") == []


def test_a_namespaced_operator_peers_in_each_namespace_it_serves(render: Any) -> None:
    manifest = render({"operator": {"watchNamespaces": ["team-a", NAMESPACE, "team-b"]}})
    assert manifest.find("ClusterKopfPeering") == []
    peerings = sorted(p["metadata"]["namespace"] for p in manifest.find("KopfPeering", "sluicegate"))
    assert peerings == sorted(["team-a", "team-b", NAMESPACE])
