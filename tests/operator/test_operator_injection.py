from __future__ import annotations

import copy
import json

import pytest

from sluicegate_operator.injection import (
    INJECTED_BY,
    InjectionError,
    InjectionSettings,
    apply_patch,
    injection_patch,
    workload_name,
)
from tests.support.kmocksupport import apply_json_patch

SETTINGS = InjectionSettings(image="ghcr.io/example/sluicegate:1.2.3", version="1.2.3")
PUBLIC = json.dumps({"ed25519-abc": "AAAA"})


def pod(labels=None, annotations=None, **spec_extra):
    meta = {
        "name": "web-5d9f7c-x1",
        "namespace": "team-a",
        "labels": {"sluicegate.io/inject": "true", **(labels or {})},
    }
    if annotations is not None:
        meta["annotations"] = annotations
    spec = {
        "serviceAccountName": "web",
        "containers": [
            {"name": "app", "image": "app:1", "env": [{"name": "OPENAI_API_KEY", "value": "sk-real"}]},
            {"name": "worker", "image": "app:1"},
        ],
        **spec_extra,
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def injected(p, settings=SETTINGS):
    return apply_json_patch(p, injection_patch(p, settings, PUBLIC))


def test_labelled_pod_gets_a_native_sidecar_first_among_init_containers():
    p = pod(initContainers=[{"name": "migrate", "image": "m:1"}])
    out = injected(p)
    first = out["spec"]["initContainers"][0]
    assert first["name"] == "sluicegate-sidecar"
    assert first["restartPolicy"] == "Always"
    assert first["startupProbe"]["httpGet"] == {"path": "/readyz", "port": 9470}
    assert out["spec"]["initContainers"][1]["name"] == "migrate"
    assert out["metadata"]["annotations"][INJECTED_BY] == "1.2.3"


def test_app_containers_get_the_base_urls_and_keep_their_own_values():
    out = injected(pod())
    app, worker = out["spec"]["containers"]
    app_env = {e["name"]: e.get("value") for e in app["env"]}
    assert app_env["OPENAI_API_KEY"] == "sk-real"  # already set: left alone
    assert app_env["OPENAI_BASE_URL"] == "http://127.0.0.1:8470/v1"
    assert app_env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8470"
    worker_env = {e["name"]: e["value"] for e in worker["env"]}
    assert worker_env["OPENAI_API_KEY"] == "sluicegate-placeholder"
    assert worker_env["ANTHROPIC_API_KEY"] == "sluicegate-placeholder"


def test_only_the_sidecar_mounts_the_token_and_the_config():
    out = injected(pod())
    for container in out["spec"]["containers"]:
        assert not container.get("volumeMounts")
    mounts = {m["name"]: m for m in out["spec"]["initContainers"][0]["volumeMounts"]}
    assert mounts["sluicegate-config"]["readOnly"] and mounts["sluicegate-token"]["readOnly"]
    volumes = {v["name"]: v for v in out["spec"]["volumes"]}
    token = volumes["sluicegate-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token == {"audience": "sluicegate", "expirationSeconds": 3600, "path": "token"}
    assert volumes["sluicegate-config"]["secret"]["secretName"] == "sluicegate-config"


def test_sidecar_carries_the_signing_keys_and_the_pod_identity():
    sidecar = injected(pod())["spec"]["initContainers"][0]
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["SLUICEGATE_SIGNING_PUBLIC_KEYS"]["value"] == PUBLIC
    assert env["SLUICEGATE_POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert (
        env["SLUICEGATE_SERVICE_ACCOUNT"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.serviceAccountName"
    )
    assert "--key-service" in sidecar["command"]


def test_reinvocation_adds_nothing():
    once = injected(pod())
    assert injection_patch(once, SETTINGS, PUBLIC) == []
    # A newer operator version sees the annotation and also adds nothing.
    newer = InjectionSettings(image="x:2", version="2.0.0")
    assert injection_patch(once, newer, PUBLIC) == []


def test_unlabelled_pod_gets_no_ops():
    p = pod()
    p["metadata"]["labels"] = {"app": "web"}
    assert injection_patch(p, SETTINGS, PUBLIC) == []
    p["metadata"]["labels"] = {"sluicegate.io/inject": "false"}
    assert injection_patch(p, SETTINGS, PUBLIC) == []


def test_annotations_set_port_resources_and_default_tier():
    out = injected(
        pod(annotations={
            "sluicegate.io/port": "18470", "sluicegate.io/cpu": "250m",
            "sluicegate.io/memory": "256Mi", "sluicegate.io/default-tier": "light",
        })
    )  # fmt: skip
    sidecar = out["spec"]["initContainers"][0]
    assert sidecar["ports"][0]["containerPort"] == 18470
    assert sidecar["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["SLUICEGATE_DEFAULT_TIER"] == "light" and env["SLUICEGATE_API_PORT"] == "18470"
    worker_env = {e["name"]: e["value"] for e in out["spec"]["containers"][1]["env"]}
    assert worker_env["OPENAI_BASE_URL"] == "http://127.0.0.1:18470/v1"
    assert out["metadata"]["annotations"]["sluicegate.io/port"] == "18470"  # existing annotations kept


@pytest.mark.parametrize(
    ("annotation", "value", "fragment"),
    [
        ("sluicegate.io/port", "9470", "port"),
        ("sluicegate.io/port", "eighty", "port"),
        ("sluicegate.io/memory", "lots", "quantity"),
        ("sluicegate.io/default-tier", "Not_A_Tier", "RoutingTier"),
    ],
)
def test_bad_annotations_are_refused_with_a_message_naming_them(annotation, value, fragment):
    with pytest.raises(InjectionError, match=fragment) as info:
        injection_patch(pod(annotations={annotation: value}), SETTINGS, PUBLIC)
    assert annotation in str(info.value)


def test_host_network_pods_are_refused():
    with pytest.raises(InjectionError, match="hostNetwork"):
        injection_patch(pod(hostNetwork=True), SETTINGS, PUBLIC)


def test_workload_is_the_deployment_behind_the_replicaset():
    p = pod(labels={"pod-template-hash": "5d9f7c"})
    p["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "web-5d9f7c", "controller": True}]
    assert workload_name(p) == "web"
    p["metadata"]["ownerReferences"] = [{"kind": "StatefulSet", "name": "db", "controller": True}]
    assert workload_name(p) == "db"


def test_apply_patch_matches_an_independent_applier():
    p = pod(initContainers=[{"name": "migrate", "image": "m:1"}], volumes=[{"name": "data", "emptyDir": {}}])
    ops = injection_patch(p, SETTINGS, PUBLIC)
    mine = copy.deepcopy(p)
    apply_patch(mine, ops)
    assert mine == apply_json_patch(p, ops)


def test_with_the_authority_enabled_sidecars_get_the_budget_authority_and_without_it_none():
    fleet = InjectionSettings(
        image="i:1", version="1", budget_authority_url="https://sluicegate-keys.sluicegate-system.svc:8480"
    )
    command = injected(pod(), fleet)["spec"]["initContainers"][0]["command"]
    at = command.index("--budget-authority")
    assert command[at + 1] == "https://sluicegate-keys.sluicegate-system.svc:8480"
    assert "--budget-authority" not in injected(pod())["spec"]["initContainers"][0]["command"]
