"""A standby replica (kopf peering: another replica leads) does not refresh BudgetPolicy spend: kopf's rule
read from the peering object, and the operator on kmock with a peer appearing and going away."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import aiohttp.web
import pytest

from sluicegate_operator.operator_run import RunOptions, run
from sluicegate_operator.scheduler import Scheduler, ScheduleSettings
from sluicegate_operator.spendscrape import SpendSettings
from sluicegate_operator.standby import PeeringGate, leads
from tests.support.kmocksupport import SluicegateKubernetes, declare_resources, eventually, running, settle
from tests.support.spend_metrics import budget_exposition

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
NS = "team-a"


def peer(priority: int, *, seen: datetime = NOW, lifetime: int = 60) -> dict[str, object]:
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def test_a_replica_leads_when_no_live_peer_has_its_priority_or_a_higher_one() -> None:
    assert leads(None, "me", 5, NOW)
    assert leads({"me": peer(5)}, "me", 5, NOW)
    assert leads({"me": peer(5), "other": peer(4)}, "me", 5, NOW)
    assert not leads({"me": peer(5), "other": peer(6)}, "me", 5, NOW)


def test_an_equal_priority_peer_pauses_both_as_kopf_does() -> None:
    assert not leads({"me": peer(5), "other": peer(5)}, "me", 5, NOW)


def test_a_dead_or_unreadable_peer_is_ignored() -> None:
    dead = peer(9, seen=NOW - timedelta(seconds=61))
    assert leads({"other": dead}, "me", 5, NOW)
    assert leads({"other": {"priority": "high", "lastseen": NOW.isoformat()}}, "me", 5, NOW)
    assert leads({"other": {"priority": 9, "lastseen": "yesterday"}}, "me", 5, NOW)
    assert not leads({"other": {"priority": 9}}, "me", 5, NOW)  # no lastseen: kopf takes it as now


async def test_the_gate_reads_the_peering_object_once_per_ttl_and_keeps_its_answer_when_the_read_fails() -> (
    None
):
    reads: list[str] = []
    status: dict[str, object] = {"other": peer(9)}
    clock = [0.0]

    async def read() -> dict[str, object] | None:
        reads.append("read")
        if status.get("broken"):
            raise RuntimeError("API away")
        return {"status": dict(status)}

    gate = PeeringGate(read, "me", 5, ttl=5.0, clock=lambda: NOW, monotonic=lambda: clock[0])
    assert not await gate.active()
    assert not await gate.active()
    assert len(reads) == 1
    clock[0] = 5.0
    status["other"] = peer(1)
    assert await gate.active()
    clock[0] = 10.0
    status["broken"] = True
    assert await gate.active()
    assert len(reads) == 3


class Sidecar:
    """Serves a BudgetPolicy's spend on /metrics, counting the scrapes."""

    def __init__(self) -> None:
        self.scrapes = 0
        self.port = 0

    async def metrics(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.scrapes += 1
        text = budget_exposition(("monthly", "all", "month", 10, 1.0, 9.0, "allow"))
        return aiohttp.web.Response(text=text, content_type="text/plain")


@contextlib.asynccontextmanager
async def serving(sidecar: Sidecar):
    app = aiohttp.web.Application()
    app.router.add_get("/metrics", sidecar.metrics)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sidecar.port = runner.addresses[0][1]
    try:
        yield sidecar
    finally:
        await runner.cleanup()


async def post(k8s, path: str, body: dict[str, object]) -> None:
    resp = await k8s.post(path, json=body)
    assert resp.status in (200, 201), await resp.text()


async def patch_peers(k8s, status: dict[str, object]) -> None:
    resp = await k8s.patch(
        "/apis/kopf.dev/v1/clusterkopfpeerings/sluicegate",
        json={"status": status},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert resp.status == 200, await resp.text()


@pytest.mark.kmock(cls=SluicegateKubernetes)
async def test_the_spend_refresh_stops_while_a_higher_priority_replica_leads_and_resumes_when_it_is_gone(
    kmock,
):
    declare_resources(kmock)
    kmock.resources["kopf.dev/v1/clusterkopfpeerings"] = {
        "kind": "ClusterKopfPeering",
        "singular": "clusterkopfpeering",
        "namespaced": False,
        "verbs": {"list", "watch", "get", "patch", "create"},
    }
    await post(
        kmock,
        "/apis/kopf.dev/v1/clusterkopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "sluicegate"}},
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "chat-1", "namespace": NS, "labels": {"sluicegate.io/inject": "true"}},
        "spec": {"containers": [{"name": "app", "image": "chat:1"}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1"},
    }
    await post(kmock, f"/api/v1/namespaces/{NS}/pods", pod)
    policy = {
        "apiVersion": "sluicegate.io/v1alpha1",
        "kind": "BudgetPolicy",
        "metadata": {"name": "monthly", "namespace": NS},
        "spec": {"limits": [{"window": "month", "amountUSD": 10}], "action": "BLOCK"},
    }
    await post(kmock, f"/apis/sluicegate.io/v1alpha1/namespaces/{NS}/budgetpolicies", policy)
    async with serving(Sidecar()) as sidecar:
        spend = SpendSettings(interval_seconds=0.3, metrics_port=sidecar.port, timeout_seconds=1.0)
        opts = RunOptions(all_namespaces=True, server=str(kmock.url), liveness=None, fast=True, spend=spend)
        async with running(lambda stop: run(opts, stop_flag=stop)):
            await eventually(lambda: sidecar.scrapes >= 2)  # alone: this replica leads

            now = datetime.now(UTC)
            await patch_peers(kmock, {"other-replica": peer(2_000_000_000, seen=now, lifetime=60)})
            await settle(1.5)  # the gate's next look (≤ 0.3 s) and the round in flight
            standing_by = sidecar.scrapes
            await settle(2.0)  # several refresh intervals
            assert sidecar.scrapes == standing_by

            gone = now - timedelta(minutes=5)
            await patch_peers(kmock, {"other-replica": peer(2_000_000_000, seen=gone, lifetime=1)})
            await eventually(lambda: sidecar.scrapes >= standing_by + 2, timeout=15)


async def test_a_standby_replica_reconciles_nothing_and_catches_up_once_it_leads() -> None:
    leading = False
    reconciled: list[str] = []
    locks: dict[str, asyncio.Lock] = {}

    async def reconcile(namespace: str) -> float | None:
        reconciled.append(namespace)
        return None

    async def active() -> bool:
        return leading

    scheduler = Scheduler(
        reconcile,
        lambda ns: locks.setdefault(ns, asyncio.Lock()),
        lambda causes: False,
        ScheduleSettings(standby_delay=1.0),
        active=active,
    )
    try:
        scheduler.trigger("team-a", urgent=True)  # a resync or renewal timer firing on the standby
        await eventually(lambda: scheduler.deferred >= 1)
        await settle(0.3)
        assert reconciled == []
        leading = True
        await eventually(lambda: reconciled == ["team-a"], timeout=5)
    finally:
        await scheduler.close()
