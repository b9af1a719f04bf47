"""What the watch handlers react to on kmock: only Secrets that matter, no start-up barrier, and a deleted
namespace's data keys (issue 19)."""

from __future__ import annotations

import logging

import pytest
from kmock import KubernetesError

from tests.support.examples_cluster import (
    applied_examples,
    config_secret,
    create,
    delete,
    example_objects,
    operator,
    patch,
    sealed,
)
from tests.support.kmocksupport import (
    SluicegateKubernetes,
    declare_resources,
    eventually,
    read_object,
    settle,
)

pytestmark = pytest.mark.kmock(cls=SluicegateKubernetes)
NS = "team-a"


def reconciles(k8s, namespace=NS):
    path = f"/apis/sluicegate.io/v1alpha1/namespaces/{namespace}/budgetpolicies"
    return sum(1 for r in list(k8s) if r.method == "GET" and r.url.path == path)


def data_keys(k8s, namespace):
    return read_object(k8s, "v1/secrets", "sluicegate-system", f"sluicegate-data-keys-{namespace}")


def unrelated_secret(name):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"x": "1"}}


async def test_a_secret_no_connection_references_is_neither_handled_nor_logged(kmock, caplog):
    declare_resources(kmock)
    caplog.set_level(logging.DEBUG)
    async with operator(kmock):
        await applied_examples(kmock)
        await settle(1.0)
        counted, logged = reconciles(kmock), len(caplog.records)
        await create(kmock, NS, unrelated_secret("app-database"))
        await create(kmock, "elsewhere", unrelated_secret("tls-cert"))
        await patch(kmock, "Secret", NS, "app-database", {"stringData": {"x": "2"}})
        await delete(kmock, "Secret", "elsewhere", "tls-cert")
        await settle(1.5)
        assert reconciles(kmock) == counted
        ours = [r for r in caplog.records[logged:] if r.name.startswith(("kopf", "sluicegate"))]
        about = [r.getMessage() for r in ours]
        assert not [m for m in about if "secret" in m.lower()], about

        await patch(kmock, "Secret", NS, "openai-key", {"stringData": {"apiKey": "sk-new"}})
        await eventually(lambda: reconciles(kmock) > counted)  # a referenced one still is


async def test_a_restart_serves_namespaces_while_provider_connections_cannot_be_listed(kmock):
    """kopf's index held every handler until all ProviderConnections in the cluster were listed: at 2,000
    namespaces a restart never finished. Nothing waits for a whole listing now."""
    declare_resources(kmock)
    async with operator(kmock):
        before, _ = await applied_examples(kmock)
        await settle(0.5)
    await patch(kmock, "RoutingTier", NS, "light", {"spec": {"rank": 5}})  # while the operator is away

    def refuse(request):
        raise KubernetesError(status=503, reason="ServiceUnavailable", message="etcd is slow")

    kmock["get /apis/sluicegate.io/v1alpha1/providerconnections"] << refuse  # the cluster-wide listing
    async with operator(kmock):

        def resealed():
            config, _ = sealed(kmock)
            return config["serial"] > before["serial"] and config

        after = await eventually(resealed, timeout=20)
        assert next(t for t in after["tiers"] if t["name"] == "light")["rank"] == 5


async def test_a_deleted_namespace_loses_its_data_keys_and_an_emptied_one_keeps_them(kmock):
    declare_resources(kmock)
    for namespace in (NS, "team-b"):
        resp = await kmock.post("/api/v1/namespaces", json={"metadata": {"name": namespace}})
        assert resp.status == 201
    async with operator(kmock):
        for namespace in (NS, "team-b"):
            await applied_examples(kmock, namespace)
        assert data_keys(kmock, NS) and data_keys(kmock, "team-b")

        resp = await kmock.delete(f"/api/v1/namespaces/{NS}")  # Terminating: its contents go first
        assert resp.status == 200
        for namespace in (NS, "team-b"):  # team-b only has its Sluicegate resources removed
            for obj in example_objects():
                await delete(kmock, obj["kind"], namespace, obj["metadata"]["name"])
        kmock.remove_namespace(NS)

        await eventually(lambda: data_keys(kmock, NS) is None)
        await eventually(lambda: config_secret(kmock, "team-b") is None)
        await settle(1.0)
        assert data_keys(kmock, "team-b") is not None  # it keeps the serial its sidecars remember


async def test_a_restart_lists_the_resources_in_pages_and_still_serves_every_namespace(kmock):
    """A (re)start's listing is fetched a page at a time (``limit``/``continue``), never the whole cluster's
    objects in one reply held at once (issue 19)."""
    declare_resources(kmock)
    async with operator(kmock, list_page=2):
        before, _ = await applied_examples(kmock)
        await settle(0.5)
    await patch(kmock, "RoutingTier", NS, "light", {"spec": {"rank": 5}})  # while the operator is away
    async with operator(kmock, list_page=2):

        def resealed():
            config, _ = sealed(kmock)
            return config["serial"] > before["serial"] and config

        after = await eventually(resealed, timeout=20)
        assert next(t for t in after["tiers"] if t["name"] == "light")["rank"] == 5
    listings = [
        r
        for r in list(kmock)
        if r.method == "GET"
        and (r.url.path.startswith("/apis/sluicegate.io/v1alpha1/") or r.url.path == "/api/v1/secrets")
        and "/namespaces/" not in r.url.path
        and not r.params.get("watch")
    ]
    assert listings and all(r.params.get("limit") == "2" for r in listings)
    assert any(r.params.get("continue") for r in listings)  # more than a page: the rest followed
