from __future__ import annotations

import base64
import hashlib
import json

import pytest

from sluicegate_cli.main import main as sluicegate
from sluicegate_operator.keystore import Keystore
from sluicegate_operator.kube import Kube
from sluicegate_operator.kubeapi import load_configuration
from tests.support.examples_cluster import (
    PLURALS,
    applied_examples,
    condition,
    config_secret,
    delete,
    example_objects,
    operator,
    patch,
    sealed,
    status_of,
)
from tests.support.kmocksupport import (
    SluicegateKubernetes,
    declare_resources,
    eventually,
    read_object,
    secret_data,
    settle,
)

pytestmark = pytest.mark.kmock(cls=SluicegateKubernetes)
NS = "team-a"


@pytest.fixture
async def cluster(kmock):
    declare_resources(kmock)
    async with operator(kmock):
        yield kmock


def every_resource_reconciled(k8s, namespace=NS):
    """Every example resource is reconciled at its current generation: Ready, and every condition the
    operator wrote so far is for that generation (the spend loop's own rounds come on their schedule)."""
    for obj in example_objects():
        if obj["kind"] not in PLURALS:
            continue
        name = obj["metadata"]["name"]
        live = read_object(k8s, f"sluicegate.io/v1alpha1/{PLURALS[obj['kind']]}", namespace, name)
        assert live is not None, name
        conditions = {c["type"]: c for c in (live.get("status") or {}).get("conditions", [])}
        assert "Ready" in conditions, name
        for type_, found in conditions.items():
            assert found["observedGeneration"] == live["metadata"]["generation"], (name, type_)
        assert conditions["Ready"]["status"] == "True", name
    return True


def fingerprint(raw):
    return hashlib.sha256(raw.encode()).hexdigest()[:8]


async def test_example_resources_yield_a_config_that_config_verify_accepts(cluster, tmp_path):
    config, secret = await applied_examples(cluster)
    assert secret["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "sluicegate",
        "sluicegate.io/config": "true",
    }
    assert {o["kind"] for o in secret["metadata"]["ownerReferences"]} == set(PLURALS)
    assert {p["name"] for p in config["providers"]} == {"mock", "openai", "anthropic", "gemini"}

    data = secret_data(secret)
    (tmp_path / "config.json").write_bytes(data["config.json"])
    (tmp_path / "config.sig").write_bytes(data["config.sig"])
    public = read_object(cluster, "v1/configmaps", "sluicegate-system", "sluicegate-signing-public")
    (tmp_path / "public.json").write_text(public["data"]["keys.json"])
    ring = read_object(cluster, "v1/secrets", "sluicegate-system", f"sluicegate-data-keys-{NS}")
    (tmp_path / "data.json").write_bytes(secret_data(ring)["keys.json"])
    args = [
        "--public-keys",
        str(tmp_path / "public.json"),
        "--data-keys",
        str(tmp_path / "data.json"),
        "--namespace",
        NS,
    ]
    assert sluicegate(["config", "verify", str(tmp_path), *args]) == 0
    assert sluicegate(["config", "verify", str(tmp_path), *args[:4], "--namespace", "team-b"]) == 1


async def test_connection_status_shows_the_key_fingerprint_never_the_key(cluster):
    await applied_examples(cluster)
    await eventually(lambda: every_resource_reconciled(cluster), timeout=30)  # statuses follow the seal
    status = status_of(cluster, "ProviderConnection", "openai")
    assert status["keyFingerprint"] == fingerprint("sk-example-openai-REPLACE-ME")
    assert status["observedGeneration"] == 1
    assert {c["observedGeneration"] for c in status["conditions"]} == {1}
    assert condition(cluster, "ProviderConnection", "openai", "KeyResolved")["status"] == "True"
    everything = json.dumps(
        [cluster.objects[key].raw for key in cluster.objects if not cluster.objects[key].deleted]
    )
    for raw in ("sk-example-openai-REPLACE-ME", "sk-ant-example-anthropic-REPLACE-ME"):
        assert everything.count(base64.b64encode(raw.encode()).decode()) == 1  # only its own Secret
        assert raw not in everything


async def test_changing_a_secret_key_reseals_with_a_higher_serial(cluster):
    before, _ = await applied_examples(cluster)
    new_key = base64.b64encode(b"sk-rotated-by-the-platform-team").decode()
    await patch(cluster, "Secret", NS, "openai-key", {"data": {"apiKey": new_key}})

    def resealed():
        config, _ = sealed(cluster)
        assert config["serial"] > before["serial"]
        assert status_of(cluster, "ProviderConnection", "openai")["keyFingerprint"] == fingerprint(
            "sk-rotated-by-the-platform-team"
        )
        return config

    after = await eventually(resealed)
    openai = next(p for p in after["providers"] if p["name"] == "openai")
    old = next(p for p in before["providers"] if p["name"] == "openai")
    assert openai["apiKey"]["ciphertext"] != old["apiKey"]["ciphertext"]


async def test_a_missing_secret_degrades_only_its_connection(cluster):
    before, _ = await applied_examples(cluster)
    await delete(cluster, "Secret", NS, "anthropic-key")

    def degraded():
        config, _ = sealed(cluster)
        assert config["serial"] > before["serial"]
        ready = condition(cluster, "ProviderConnection", "anthropic")
        assert ready["status"] == "False" and ready["reason"] == "SecretNotFound"
        assert status_of(cluster, "RoutingTier", "light")["notReady"] == ["anthropic/claude-haiku-4-5"]
        return config

    config = await eventually(degraded)
    key = condition(cluster, "ProviderConnection", "anthropic", "KeyResolved")
    assert (key["status"], key["reason"]) == ("False", "SecretNotFound")
    assert "keyFingerprint" not in status_of(cluster, "ProviderConnection", "anthropic")
    assert {p["name"] for p in config["providers"]} == {"mock", "openai", "gemini"}
    assert condition(cluster, "ProviderConnection", "openai")["status"] == "True"
    assert {
        c["connection"] for c in next(t for t in config["tiers"] if t["name"] == "light")["candidates"]
    } == {"openai", "gemini"}

    def warned():
        events = [cluster.objects[k].raw for k in cluster.objects if k[0].plural == "events" and k[1] == NS]
        return [
            e
            for e in events
            if e["involvedObject"]["name"] == "anthropic" and e["reason"] == "SecretNotFound"
        ]

    event = (await eventually(warned))[0]
    assert event["type"] == "Warning" and event["involvedObject"]["kind"] == "ProviderConnection"


async def test_deleting_resources_cleans_up_the_config(cluster):
    await applied_examples(cluster)
    await delete(cluster, "ProviderConnection", NS, "gemini")

    def without_gemini():
        config, secret = sealed(cluster)
        assert "gemini" not in {p["name"] for p in config["providers"]}
        assert "gemini" not in {o["name"] for o in secret["metadata"]["ownerReferences"]}
        return True

    await eventually(without_gemini)
    for obj in example_objects():
        if obj["kind"] != "Secret" and obj["metadata"]["name"] != "gemini":
            await delete(cluster, obj["kind"], NS, obj["metadata"]["name"])
    await eventually(lambda: config_secret(cluster) is None)


async def test_a_deleted_config_secret_comes_back_with_a_higher_serial(cluster):
    before, _ = await applied_examples(cluster)
    await delete(cluster, "Secret", NS, "sluicegate-config")
    after = await eventually(lambda: sealed(cluster)[0] if config_secret(cluster) else None)
    assert after["serial"] > before["serial"]
    assert {p["name"] for p in after["providers"]} == {p["name"] for p in before["providers"]}


async def test_an_edited_config_secret_is_resealed(cluster):
    before, _ = await applied_examples(cluster)
    forged = dict(before, budgets=[])
    body = base64.b64encode(json.dumps(forged).encode()).decode()
    await patch(cluster, "Secret", NS, "sluicegate-config", {"data": {"config.json": body}})
    after = await eventually(lambda: (c := sealed(cluster)[0])["serial"] > before["serial"] and c)
    assert len(after["budgets"]) == 2


async def test_rotating_the_data_key_reseals_with_the_new_key_id(cluster):
    before, _ = await applied_examples(cluster)
    kube = Kube(await load_configuration(server=str(cluster.url)))
    try:
        ring = await Keystore(kube, "sluicegate-system").rotate_data_key(NS)
    finally:
        await kube.close()
    old_kid = next(p for p in before["providers"] if p["name"] == "openai")["apiKey"]["kid"]
    assert ring.active.kid != old_kid and set(ring.keys) == {old_kid, ring.active.kid}

    def rekeyed():
        config, _ = sealed(cluster)
        assert {p["apiKey"]["kid"] for p in config["providers"] if p.get("apiKey")} == {ring.active.kid}
        return config

    assert (await eventually(rekeyed))["serial"] > before["serial"]


async def test_a_restart_converges_without_rewriting_anything(kmock):
    declare_resources(kmock)
    async with operator(kmock):
        await applied_examples(kmock)
        await eventually(lambda: every_resource_reconciled(kmock), timeout=30)
    watched = [key for key in kmock.objects if key[1] == NS and key[0].plural != "events"]
    versions = {key: kmock.objects[key].raw["metadata"]["resourceVersion"] for key in watched}
    seen = len(list(kmock))
    async with operator(kmock):

        def reconciled():  # the new operator did look at the namespace
            paths = [r.url.path for r in list(kmock)[seen:] if r.method == "GET"]
            return f"/api/v1/namespaces/{NS}/secrets/sluicegate-config" in paths

        await eventually(reconciled)
        await settle(1.5)
    assert {key: kmock.objects[key].raw["metadata"]["resourceVersion"] for key in watched} == versions


async def test_rotating_the_signing_key_reseals_and_keeps_the_old_key_published(cluster):
    before, _ = await applied_examples(cluster)
    kube = Kube(await load_configuration(server=str(cluster.url)))
    try:
        ring = await Keystore(kube, "sluicegate-system").rotate_signing_key()
    finally:
        await kube.close()
    assert ring.active.kid != before["signingKeyId"]
    after = await eventually(lambda: (c := sealed(cluster)[0])["signingKeyId"] == ring.active.kid and c)
    assert after["serial"] > before["serial"]
    public = json.loads(
        read_object(cluster, "v1/configmaps", "sluicegate-system", "sluicegate-signing-public")["data"][
            "keys.json"
        ]
    )
    assert set(public) == {before["signingKeyId"], ring.active.kid}


async def test_a_broken_budget_keeps_the_last_good_config_and_says_why(cluster):
    before, _ = await applied_examples(cluster)
    await patch(cluster, "BudgetPolicy", NS, "namespace-monthly", {"spec": {"downgradeTo": None}})

    def refused():
        ready = condition(cluster, "BudgetPolicy", "namespace-monthly")
        assert ready["status"] == "False" and "downgradeTo is required" in ready["message"]
        assert ready["observedGeneration"] == 2
        return True

    await eventually(refused)
    assert sealed(cluster)[0]["serial"] == before["serial"]
    await patch(cluster, "BudgetPolicy", NS, "namespace-monthly", {"spec": {"downgradeTo": "light"}})
    await eventually(lambda: condition(cluster, "BudgetPolicy", "namespace-monthly")["status"] == "True")


async def test_a_budget_in_an_unknown_timezone_keeps_the_last_good_config_and_names_the_field(cluster):
    """fault 33: the CRD accepts ``Mars/Olympus``; render refuses it, so no sidecar is handed it."""
    before, _ = await applied_examples(cluster)
    limits = [{"window": "month", "amountUSD": 500, "timezone": "Mars/Olympus"}]
    await patch(cluster, "BudgetPolicy", NS, "namespace-monthly", {"spec": {"limits": limits}})

    def refused():
        ready = condition(cluster, "BudgetPolicy", "namespace-monthly")
        assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
        assert "spec.limits[0].timezone" in ready["message"] and "Mars/Olympus" in ready["message"]
        assert ready["observedGeneration"] == 2
        return True

    await eventually(refused)
    assert sealed(cluster)[0]["serial"] == before["serial"]
    limits[0]["timezone"] = "Europe/Berlin"
    await patch(cluster, "BudgetPolicy", NS, "namespace-monthly", {"spec": {"limits": limits}})
    await eventually(lambda: condition(cluster, "BudgetPolicy", "namespace-monthly")["status"] == "True")
    config, _ = sealed(cluster)
    assert config["serial"] > before["serial"]
    policy = next(b for b in config["budgets"] if b["name"] == "namespace-monthly")
    assert policy["limits"][0]["timezone"] == "Europe/Berlin"


async def test_a_connection_whose_alias_collides_with_its_model_is_left_out_naming_the_field(cluster):
    await applied_examples(cluster)
    models = [{"name": "mock-small"}, {"name": "mock-large", "alias": "mock-small"}]
    await patch(cluster, "ProviderConnection", NS, "mock", {"spec": {"models": models}})

    def refused():
        ready = condition(cluster, "ProviderConnection", "mock")
        assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
        assert "spec.models[1].alias" in ready["message"]
        config, _ = sealed(cluster)
        assert "mock" not in {p["name"] for p in config["providers"]}
        return True

    await eventually(refused)


async def test_nothing_of_a_data_key_reaches_the_app_namespace(cluster):
    await applied_examples(cluster)
    ring = secret_data(read_object(cluster, "v1/secrets", "sluicegate-system", f"sluicegate-data-keys-{NS}"))
    keys = json.loads(ring["keys.json"])["keys"]
    outside = json.dumps(
        [
            cluster.objects[k].raw
            for k in cluster.objects
            if k[1] != "sluicegate-system" and not cluster.objects[k].deleted
        ]
    )
    for kid, key in keys.items():
        assert key not in outside
        assert base64.b64encode(key.encode()).decode() not in outside


async def test_a_retired_model_is_a_warning_event_and_condition_on_its_connection(cluster):
    await applied_examples(cluster)
    models = [{"name": "claude-haiku-4-5"}, {"name": "claude-3-5-haiku-20241022"}]
    await patch(cluster, "ProviderConnection", NS, "anthropic", {"spec": {"models": models}})

    def warned():
        found = condition(cluster, "ProviderConnection", "anthropic", "ModelsCurrent")
        assert (found["status"], found["reason"]) == ("False", "ModelRetired")
        assert "claude-3-5-haiku-20241022 was retired by anthropic" in found["message"]
        assert condition(cluster, "ProviderConnection", "anthropic")["status"] == "True"  # still serves
        events = [cluster.objects[k].raw for k in cluster.objects if k[0].plural == "events" and k[1] == NS]
        [event] = [
            e for e in events if e["involvedObject"]["name"] == "anthropic" and e["reason"] == "ModelRetired"
        ]
        return event

    event = await eventually(warned)
    assert event["type"] == "Warning" and "claude-3-5-haiku-20241022" in event["message"]
