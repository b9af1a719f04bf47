from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest
import yaml

from sluicegate_operator.operator_run import Listener, RunOptions, run
from tests.support.kmocksupport import (
    SluicegateKubernetes,
    admission_review,
    apply_json_patch,
    declare_resources,
    decode_patch,
    make_tls,
    read_object,
    running,
)

pytestmark = pytest.mark.kmock(cls=SluicegateKubernetes)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CRS = ("sluicegate.io", "v1alpha1")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def labelled_pod(**labels):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-5d9f7c-",
            "labels": {"sluicegate.io/inject": "true", "pod-template-hash": "5d9f7c", **labels},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-5d9f7c",
                    "uid": "u",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "serviceAccountName": "web",
            "containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "LOG_LEVEL", "value": "info"}]},
                {
                    "name": "metrics",
                    "image": "exporter:1",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                },
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }


@pytest.fixture
async def webhook(kmock, tmp_path):
    declare_resources(kmock)
    tls = make_tls(tmp_path)
    port = free_port()
    listener = Listener("127.0.0.1", port, str(tls.cert_path), str(tls.key_path))
    opts = RunOptions(
        all_namespaces=True, server=str(kmock.url), standalone=True, liveness=None, fast=True,
        webhook=listener, sidecar_image="registry.example/sluicegate:9.9.9",
    )  # fmt: skip
    connector = aiohttp.TCPConnector(ssl=tls.client_context())
    async with (
        running(lambda stop: run(opts, stop_flag=stop)),
        aiohttp.ClientSession(connector=connector) as http,
    ):

        async def review(obj, path="mutate-pods", resource=("", "v1", "pods"), kind="Pod"):
            body = admission_review(obj, resource=resource, kind=kind, namespace="team-a")
            for _ in range(200):
                try:
                    async with http.post(f"https://127.0.0.1:{port}/{path}", json=body) as resp:
                        assert resp.status == 200, await resp.text()
                        answer = await resp.json()
                        assert answer["response"]["uid"] == body["request"]["uid"]
                        return answer["response"]
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)  # the operator is still starting
            raise AssertionError("the webhook server never came up")

        yield review, kmock


async def test_a_labelled_pod_gets_the_native_sidecar_exactly_once(webhook):
    review, k8s = webhook
    pod = labelled_pod()
    response = await review(pod)
    assert response["allowed"] is True
    injected = apply_json_patch(pod, decode_patch(response))

    sidecars = [c for c in injected["spec"]["initContainers"] if c["name"] == "sluicegate-sidecar"]
    assert len(sidecars) == 1
    sidecar = sidecars[0]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == "registry.example/sluicegate:9.9.9"
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in sidecar["env"]}
    public = read_object(k8s, "v1/configmaps", "sluicegate-system", "sluicegate-signing-public")
    assert env["SLUICEGATE_SIGNING_PUBLIC_KEYS"]["value"] == public["data"]["keys.json"]
    assert env["SLUICEGATE_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["SLUICEGATE_WORKLOAD"]["value"] == "web"
    assert sorted(v["name"] for v in injected["spec"]["volumes"]) == [
        "data", "sluicegate-config", "sluicegate-ledger", "sluicegate-podinfo", "sluicegate-token",
    ]  # fmt: skip
    for container in injected["spec"]["containers"]:
        names = [e["name"] for e in container["env"]]
        for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL"):
            assert names.count(var) == 1
    assert {e["name"]: e["value"] for e in injected["spec"]["containers"][0]["env"]}["LOG_LEVEL"] == "info"

    again = await review(injected)
    assert again["allowed"] is True and decode_patch(again) == []


async def test_no_app_container_mounts_the_token_or_the_config(webhook):
    review, _ = webhook
    pod = labelled_pod()
    injected = apply_json_patch(pod, decode_patch(await review(pod)))
    for container in injected["spec"]["containers"]:
        mounted = {m["name"] for m in container.get("volumeMounts", [])}
        assert not mounted & {"sluicegate-config", "sluicegate-token"}
    sidecar_mounts = {m["name"] for m in injected["spec"]["initContainers"][0]["volumeMounts"]}
    assert {"sluicegate-config", "sluicegate-token"} <= sidecar_mounts


async def test_an_unlabelled_pod_gets_no_patch(webhook):
    review, _ = webhook
    pod = labelled_pod()
    pod["metadata"]["labels"] = {"app": "web"}
    response = await review(pod)
    assert response["allowed"] is True
    assert "patch" not in response


async def test_a_bad_annotation_refuses_the_pod_with_an_actionable_message(webhook):
    review, _ = webhook
    pod = labelled_pod()
    pod["metadata"]["annotations"] = {"sluicegate.io/memory": "plenty"}
    response = await review(pod)
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert "sluicegate.io/memory" in response["status"]["message"]


@pytest.mark.parametrize(
    ("file", "field"),
    [
        ("routingtier-unknown-field.yaml", "colour"),
        ("routingtier-rank-not-integer.yaml", "spec.rank"),
        ("providerconnection-unknown-provider.yaml", "spec.provider"),
    ],
)
async def test_invalid_resources_are_refused_naming_the_field(webhook, file, field):
    review, _ = webhook
    obj = yaml.safe_load((EXAMPLES / "invalid" / file).read_text())
    plural = {"RoutingTier": "routingtiers", "ProviderConnection": "providerconnections"}[obj["kind"]]
    response = await review(obj, path=f"validate-{plural}", resource=(*CRS, plural), kind=obj["kind"])
    assert response["allowed"] is False
    assert field in response["status"]["message"]
    assert obj["metadata"]["name"] in response["status"]["message"]


async def test_the_example_resources_are_admitted(webhook):
    review, _ = webhook
    plurals = {
        "RoutingTier": "routingtiers",
        "ProviderConnection": "providerconnections",
        "BudgetPolicy": "budgetpolicies",
    }
    for name in ("providerconnections.yaml", "routingtiers.yaml", "budgetpolicies.yaml"):
        for obj in yaml.safe_load_all((EXAMPLES / name).read_text()):
            plural = plurals[obj["kind"]]
            response = await review(obj, path=f"validate-{plural}", resource=(*CRS, plural), kind=obj["kind"])
            assert response["allowed"] is True, response
