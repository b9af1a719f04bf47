"""The chart lints strictly and renders only valid objects, for every supported combination of values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

CHART = Path(__file__).resolve().parents[2] / "charts" / "sluicegate"
NAMESPACE = "sluicegate-system"  # the release namespace conftest renders into

KUBERNETES_VERSION = "1.33"
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

# Kinds whose schema comes from a CRD the chart does not own: structurally checked below instead.
FOREIGN_KINDS = {"PrometheusRule", "PodMonitor", "ServiceMonitor", "Certificate", "Issuer"}
PEERING_KINDS = {"ClusterKopfPeering", "KopfPeering"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "monitoring": {
        "monitoring": {
            "enabled": True,
            "labels": {"release": "kube-prometheus-stack"},
            "serviceMonitor": {"enabled": True},
            "grafanaDashboard": {"enabled": True, "namespace": "monitoring"},
        }
    },
    "cert-manager": {"certManager": {"enabled": True}, "monitoring": {"enabled": True}},
    "cert-manager-cluster-issuer": {
        "certManager": {"enabled": True, "issuerRef": {"kind": "ClusterIssuer", "name": "ca"}}
    },
    "watched-namespaces": {
        "operator": {
            "replicas": 3,
            "watchNamespaces": ["team-a", "team-b"],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "platform", "effect": "NoSchedule"}
            ],
            "priorityClassName": "system-cluster-critical",
        },
        "webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 5},
        "imagePullSecrets": ["regcred", {"name": "other"}],
        "monitoring": {"enabled": True},
    },
    "single-replica": {
        "operator": {"replicas": 1},
        "image": {"repository": "registry.example/sg", "tag": "1.2.3"},
    },
    "reconcile": {
        "monitoring": {"enabled": True},
        "imagePullSecrets": ["regcred"],
        "reports": {
            "reconcile": {
                "enabled": True,
                "export": {"fetch": {"provider": "anthropic", "adminKeySecret": {"name": "admin-key"}}},
                "ledgers": {"database": {"urlSecret": {"name": "ledger-db"}}},
                "output": {
                    "pushgateway": "http://pushgateway.monitoring.svc:9091",
                    "volume": {"persistentVolumeClaim": {"claimName": "sluicegate-reports"}},
                    "html": "reconcile.html",
                    "metricsFile": "sluicegate_reconcile.prom",
                },
            }
        },
    },
}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_chart_passes_helm_lint_strict(helm: Any, name: str, tmp_path: Any) -> None:
    values = tmp_path / "values.json"
    values.write_text(json.dumps(VALUE_SETS[name]))
    done = helm.run("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--values", str(values))
    assert "0 chart(s) failed" in done.stdout, done.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_built_in_object_is_valid_for_kubernetes(render: Any, name: str) -> None:
    checked = 0
    for obj in render(VALUE_SETS[name]).objects:
        if obj["kind"] in FOREIGN_KINDS | PEERING_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}")
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_objects_are_unique_and_namespaced_into_the_release(render: Any, name: str) -> None:
    seen: set[tuple[str, str, str]] = set()
    watched = set(VALUE_SETS[name].get("operator", {}).get("watchNamespaces", []))
    dashboard_ns = VALUE_SETS[name].get("monitoring", {}).get("grafanaDashboard", {}).get("namespace")
    for obj in render(VALUE_SETS[name]).objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        if "namespace" in meta:
            allowed = {NAMESPACE} | watched | ({dashboard_ns} if dashboard_ns else set())
            assert meta["namespace"] in allowed, key


def _check_prometheus_rule(obj: dict[str, Any]) -> None:
    groups = obj["spec"]["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    for rule in (r for g in groups for r in g["rules"]):
        assert ("alert" in rule) != ("record" in rule), rule
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert "for" not in rule or DURATION.match(rule["for"]), rule
        assert set(rule["annotations"]) >= {"summary", "description"}


def _check_pod_monitor(obj: dict[str, Any]) -> None:
    spec = obj["spec"]
    assert spec["selector"]["matchLabels"] == {"sluicegate.io/inject": "true"}
    for endpoint in spec["podMetricsEndpoints"]:
        assert endpoint["portNumber"] == 9470 and endpoint["path"] == "/metrics"
        assert DURATION.match(endpoint["interval"])


def _check_service_monitor(obj: dict[str, Any]) -> None:
    spec = obj["spec"]
    assert spec["selector"]["matchLabels"]
    for endpoint in spec["endpoints"]:
        assert endpoint["port"] and endpoint["path"] == "/metrics"


def _check_certificate(obj: dict[str, Any]) -> None:
    spec = obj["spec"]
    assert (
        spec["secretName"]
        and spec["issuerRef"]["name"]
        and spec["issuerRef"]["kind"] in {"Issuer", "ClusterIssuer"}
    )
    assert spec.get("isCA") or spec["dnsNames"]


def _check_issuer(obj: dict[str, Any]) -> None:
    assert len(set(obj["spec"]) & {"selfSigned", "ca", "acme", "vault"}) == 1


def _check_peering(obj: dict[str, Any]) -> None:
    assert obj["apiVersion"] == "kopf.dev/v1" and obj["metadata"]["name"] == "sluicegate"


STRUCTURAL_CHECKS = {
    "PrometheusRule": _check_prometheus_rule,
    "PodMonitor": _check_pod_monitor,
    "ServiceMonitor": _check_service_monitor,
    "Certificate": _check_certificate,
    "Issuer": _check_issuer,
    "ClusterKopfPeering": _check_peering,
    "KopfPeering": _check_peering,
}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_custom_resources_of_other_projects_are_structurally_sound(render: Any, name: str) -> None:
    for obj in render(VALUE_SETS[name]).objects:
        if obj["kind"] in STRUCTURAL_CHECKS:
            assert obj["metadata"]["name"]
            STRUCTURAL_CHECKS[obj["kind"]](obj)


def test_monitoring_objects_appear_only_when_monitoring_is_enabled(render: Any) -> None:
    off = {o["kind"] for o in render().objects}
    on = {o["kind"] for o in render(VALUE_SETS["monitoring"]).objects}
    assert not off & {"PrometheusRule", "PodMonitor", "ServiceMonitor"}
    assert {"PrometheusRule", "PodMonitor", "ServiceMonitor"} <= on
    assert not [o for o in render().find("ConfigMap") if o["metadata"]["name"] == "sluicegate-dashboard"]
    assert render(VALUE_SETS["monitoring"]).one("ConfigMap", "sluicegate-dashboard")["metadata"][
        "namespace"
    ] == ("monitoring")


def test_a_structural_check_catches_a_broken_rule() -> None:
    broken = {
        "spec": {
            "groups": [{"name": "g", "rules": [{"alert": "A", "expr": "", "labels": {"severity": "page"}}]}]
        }
    }
    with pytest.raises(AssertionError):
        _check_prometheus_rule(broken)
