"""Reconcile scheduling on kmock: the operator's own writes start nothing, and a tenant's edit is served
ahead of a whole-cluster wave (issue 19)."""

from __future__ import annotations

import pytest

from sluicegate_operator.keystore import Keystore
from sluicegate_operator.kube import Kube
from sluicegate_operator.kubeapi import load_configuration
from sluicegate_operator.scheduler import ScheduleSettings
from tests.support.examples_cluster import applied_examples, operator, patch, sealed
from tests.support.kmocksupport import SluicegateKubernetes, declare_resources, eventually, settle

pytestmark = pytest.mark.kmock(cls=SluicegateKubernetes)
NS = "team-a"


def reconciles(k8s, namespace=NS):
    """Each reconcile lists the namespace's BudgetPolicies once (nothing else lists them there)."""
    path = f"/apis/sluicegate.io/v1alpha1/namespaces/{namespace}/budgetpolicies"
    return sum(1 for r in list(k8s) if r.method == "GET" and r.url.path == path)


async def quiet(k8s, seconds=1.5):
    """Wait until no reconcile started for ``seconds``; the count then."""
    while True:
        counted = reconciles(k8s)
        await settle(seconds)
        if reconciles(k8s) == counted:
            return counted


async def rotated_signing_key(k8s):
    kube = Kube(await load_configuration(server=str(k8s.url)))
    try:
        return await Keystore(kube, "sluicegate-system").rotate_signing_key()
    finally:
        await kube.close()


async def test_a_tenant_edit_costs_one_reconcile_and_the_operators_own_writes_start_none(kmock):
    declare_resources(kmock)
    async with operator(kmock) as box:
        before, _ = await applied_examples(kmock)
        counted = await quiet(kmock)
        limits = [{"window": "month", "amountUSD": 600, "timezone": "UTC"}]
        await patch(kmock, "BudgetPolicy", NS, "namespace-monthly", {"spec": {"limits": limits}})

        def resealed():
            config, _ = sealed(kmock)
            policy = next(b for b in config["budgets"] if b["name"] == "namespace-monthly")
            return config["serial"] > before["serial"] and 600_000_000 in policy["limits"][0].values()

        await eventually(resealed)
        await settle(2.0)  # the config, serial and status writes have all come back on the watch
        assert reconciles(kmock) - counted == 1
        assert box[0].scheduler.skipped >= 1  # their events arrived and were recognised


async def test_a_tenant_edit_during_a_signing_key_wave_is_served_before_the_wave_ends(kmock):
    declare_resources(kmock)
    namespaces = [f"team-{i}" for i in range(8)]
    slow = ScheduleSettings(workers=1, wave_rate=1.0, wave_burst=1.0)
    async with operator(kmock, schedule=slow):
        for namespace in namespaces:  # tenants' creations are urgent: not paced
            await applied_examples(kmock, namespace)
        old_kid = sealed(kmock, namespaces[0])[0]["signingKeyId"]
        ring = await rotated_signing_key(kmock)
        last = namespaces[-1]  # the wave goes in name order: this one would be last
        await patch(kmock, "RoutingTier", last, "light", {"spec": {"rank": 7}})

        def edited():
            config, _ = sealed(kmock, last)
            return next(t for t in config["tiers"] if t["name"] == "light")["rank"] == 7

        await eventually(edited, timeout=30, interval=0.02)
        waiting = [ns for ns in namespaces if sealed(kmock, ns)[0]["signingKeyId"] == old_kid]
        assert len(waiting) >= 4, waiting  # served while most of the wave was still to come

        def resealed_everywhere():
            return all(sealed(kmock, ns)[0]["signingKeyId"] == ring.active.kid for ns in namespaces)

        await eventually(resealed_everywhere, timeout=120)  # one worker, one at a time
