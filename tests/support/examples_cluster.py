"""The examples/ resources on kmock, and the requests tests use to change them like a tenant would."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kmock
import yaml

from sluicegate_operator.operator_run import RunOptions, run
from tests.support.kmocksupport import eventually, read_object, running, secret_data

if TYPE_CHECKING:
    from sluicegate_operator.handlers import Parts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NS = "team-a"
CR_COUNT = 10  # 4 connections, 4 tiers, 2 budgets in examples/
PLURALS = {
    "ProviderConnection": "providerconnections",
    "RoutingTier": "routingtiers",
    "BudgetPolicy": "budgetpolicies",
}


def example_objects() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in ("secrets.yaml", "providerconnections.yaml", "routingtiers.yaml", "budgetpolicies.yaml"):
        docs += [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    return docs


def url_of(kind: str, namespace: str, name: str | None = None) -> str:
    base = (
        f"/api/v1/namespaces/{namespace}/secrets"
        if kind == "Secret"
        else f"/apis/sluicegate.io/v1alpha1/namespaces/{namespace}/{PLURALS[kind]}"
    )
    return base if name is None else f"{base}/{name}"


async def create(k8s: kmock.KubernetesEmulator, namespace: str, obj: dict[str, Any]) -> None:
    resp = await k8s.post(
        url_of(obj["kind"], namespace), json={**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    )
    assert resp.status in (200, 201), await resp.text()


async def delete(k8s: kmock.KubernetesEmulator, kind: str, namespace: str, name: str) -> None:
    resp = await k8s.delete(url_of(kind, namespace, name))
    assert resp.status == 200, await resp.text()


async def patch(
    k8s: kmock.KubernetesEmulator, kind: str, namespace: str, name: str, body: dict[str, Any]
) -> None:
    headers = {"Content-Type": "application/merge-patch+json"}
    resp = await k8s.patch(url_of(kind, namespace, name), data=json.dumps(body), headers=headers)
    assert resp.status == 200, await resp.text()


@contextlib.asynccontextmanager
async def operator(k8s: kmock.KubernetesEmulator, **options: Any) -> AsyncIterator[list[Parts]]:
    """The operator on kmock in a thread of its own; yields a list that receives its parts."""
    opts = RunOptions(
        all_namespaces=True, server=str(k8s.url), standalone=True, liveness=None, fast=True, **options
    )
    box: list[Parts] = []
    async with running(lambda stop: run(opts, stop_flag=stop, parts_box=box)):
        yield box


def config_secret(k8s: kmock.KubernetesEmulator, namespace: str = NS) -> dict[str, Any] | None:
    return read_object(k8s, "v1/secrets", namespace, "sluicegate-config")


def sealed(k8s: kmock.KubernetesEmulator, namespace: str = NS) -> tuple[dict[str, Any], dict[str, Any]]:
    secret = config_secret(k8s, namespace)
    assert secret is not None
    data = secret_data(secret)
    return json.loads(data["config.json"]), secret


def status_of(k8s: kmock.KubernetesEmulator, kind: str, name: str, namespace: str = NS) -> dict[str, Any]:
    obj = read_object(k8s, f"sluicegate.io/v1alpha1/{PLURALS[kind]}", namespace, name)
    assert obj is not None
    return obj.get("status") or {}


def condition(
    k8s: kmock.KubernetesEmulator, kind: str, name: str, type_: str = "Ready", namespace: str = NS
) -> dict[str, Any]:
    conds = {c["type"]: c for c in status_of(k8s, kind, name, namespace).get("conditions", [])}
    return conds[type_]


async def applied_examples(
    k8s: kmock.KubernetesEmulator, namespace: str = NS
) -> tuple[dict[str, Any], dict[str, Any]]:
    for obj in example_objects():
        await create(k8s, namespace, obj)

    def settled() -> tuple[dict[str, Any], dict[str, Any]]:
        secret = config_secret(k8s, namespace)
        assert secret is not None and len(secret["metadata"]["ownerReferences"]) == CR_COUNT
        assert condition(k8s, "ProviderConnection", "gemini", namespace=namespace)["status"] == "True"
        return sealed(k8s, namespace)

    result: tuple[dict[str, Any], dict[str, Any]] = await eventually(settled, timeout=30)
    return result
