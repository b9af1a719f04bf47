"""The emulator behaves like an apiserver where the operator and kopf depend on it."""

from __future__ import annotations

import json

import pytest

from tests.support.kmocksupport import SluicegateKubernetes, declare_resources, read_object

pytestmark = pytest.mark.kmock(cls=SluicegateKubernetes)
TIERS = "/apis/sluicegate.io/v1alpha1/namespaces/ns/routingtiers"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


async def created(kmock):
    declare_resources(kmock)
    resp = await kmock.post(
        TIERS,
        json={
            "apiVersion": "sluicegate.io/v1alpha1",
            "kind": "RoutingTier",
            "metadata": {"name": "light"},
            "spec": {"rank": 0},
        },
    )
    assert resp.status == 200
    return await resp.json()


async def test_create_stamps_identity_and_versions(kmock):
    obj = await created(kmock)
    meta = obj["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1 and meta["namespace"] == "ns"
    listing = await (await kmock.get(TIERS)).json()
    assert listing["metadata"]["resourceVersion"] == meta["resourceVersion"]


async def test_spec_patches_bump_generation_status_patches_do_not_and_no_ops_change_nothing(kmock):
    obj = await created(kmock)
    rv = int(obj["metadata"]["resourceVersion"])
    resp = await kmock.patch(f"{TIERS}/light", data=json.dumps({"spec": {"rank": 5}}), headers=MERGE)
    spec_patched = (await resp.json())["metadata"]
    assert spec_patched["generation"] == 2 and int(spec_patched["resourceVersion"]) > rv
    resp = await kmock.patch(f"{TIERS}/light/status", data=json.dumps({"status": {"x": 1}}), headers=MERGE)
    status_patched = (await resp.json())["metadata"]
    assert status_patched["generation"] == 2 and int(status_patched["resourceVersion"]) > int(
        spec_patched["resourceVersion"]
    )
    resp = await kmock.patch(f"{TIERS}/light/status", data=json.dumps({"status": {"x": 1}}), headers=MERGE)
    assert (await resp.json())["metadata"]["resourceVersion"] == status_patched["resourceVersion"]


async def test_a_failed_json_patch_test_is_a_422(kmock):
    await created(kmock)
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "999"},
        {"op": "replace", "path": "/spec/rank", "value": 9},
    ]
    resp = await kmock.patch(f"{TIERS}/light", data=json.dumps(ops), headers=JSON_PATCH)
    assert resp.status == 422
    assert read_object(kmock, "sluicegate.io/v1alpha1/routingtiers", "ns", "light")["spec"]["rank"] == 0


async def test_secret_string_data_is_folded_into_data_and_generate_name_is_honoured(kmock):
    declare_resources(kmock)
    resp = await kmock.post(
        "/api/v1/namespaces/ns/secrets",
        json={"kind": "Secret", "metadata": {"generateName": "k-"}, "stringData": {"a": "b"}},
    )
    obj = await resp.json()
    assert (
        obj["metadata"]["name"].startswith("k-") and obj["data"] == {"a": "Yg=="} and "stringData" not in obj
    )


async def test_a_listing_with_a_limit_comes_in_pages_joined_by_continue_tokens(kmock):
    declare_resources(kmock)
    for rank in range(5):
        body = {
            "apiVersion": "sluicegate.io/v1alpha1",
            "kind": "RoutingTier",
            "metadata": {"name": f"t{rank}"},
        }
        assert (await kmock.post(TIERS, json={**body, "spec": {"rank": rank}})).status == 200
    names, versions, token = [], set(), ""
    while True:
        params = {"limit": "2", **({"continue": token} if token else {})}
        page = await (await kmock.get(TIERS, params=params)).json()
        assert len(page["items"]) <= 2
        names += [item["metadata"]["name"] for item in page["items"]]
        versions.add(page["metadata"]["resourceVersion"])
        token = page["metadata"]["continue"]
        if not token:
            break
    assert names == [f"t{rank}" for rank in range(5)] and len(versions) == 1
