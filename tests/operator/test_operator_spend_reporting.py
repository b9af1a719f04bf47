"""The operator scrapes injected Pods' sidecar metrics into BudgetPolicy status, with Events and webhooks
(kopf on kmock; the "sidecars" are one loopback HTTP server every Pod's IP points at)."""

from __future__ import annotations

import base64
import contextlib
import json

import aiohttp.web
import pytest

from sluicegate_operator.alerttargets import WebhookPolicy
from sluicegate_operator.operator_run import RunOptions, run
from sluicegate_operator.spendscrape import SpendSettings
from tests.support.kmocksupport import (
    SluicegateKubernetes,
    declare_resources,
    eventually,
    read_object,
    running,
    settle,
)
from tests.support.spend_metrics import budget_exposition

pytestmark = pytest.mark.kmock(cls=SluicegateKubernetes)
NS = "team-a"
POLICY = {
    "apiVersion": "sluicegate.io/v1alpha1",
    "kind": "BudgetPolicy",
    "metadata": {"name": "monthly", "namespace": NS},
    "spec": {
        "limits": [{"window": "month", "amountUSD": 10}],
        "action": "BLOCK",
        "alerts": {
            "thresholds": [0.5, 0.8],
            "webhooks": [{"urlSecretRef": {"name": "budget-hook", "key": "url"}, "format": "slack"}],
        },
    },
}


class FakeSidecars:
    """/metrics as a sidecar serves it, and /hook as a Slack incoming webhook records what it got."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.hooks: list[dict[str, object]] = []
        self.port = 0

    def text(self) -> str:
        return budget_exposition(("monthly", "all", "month", 10, self.spent, 10 - self.spent, "allow"))

    async def metrics(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text=self.text(), content_type="text/plain")

    async def hook(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.hooks.append(await request.json())
        return aiohttp.web.Response(text="ok")


@contextlib.asynccontextmanager
async def serving(fake: FakeSidecars):
    app = aiohttp.web.Application()
    app.router.add_get("/metrics", fake.metrics)
    app.router.add_post("/hook", fake.hook)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = runner.addresses[0][1]
    try:
        yield fake
    finally:
        await runner.cleanup()


def pod(name: str, ip: str, *, injected: bool = True) -> dict[str, object]:
    labels = {"app": "chat", **({"sluicegate.io/inject": "true"} if injected else {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "chat:1"}]},
        "status": {"phase": "Running", "podIP": ip},
    }


async def post(k8s, path: str, body: dict[str, object]) -> None:
    resp = await k8s.post(path, json=body)
    assert resp.status in (200, 201), await resp.text()


def status(k8s) -> dict[str, object]:
    obj = read_object(k8s, "sluicegate.io/v1alpha1/budgetpolicies", NS, "monthly")
    assert obj is not None
    return obj.get("status") or {}


def alert_events(k8s) -> list[dict[str, object]]:
    events = [k8s.objects[k].raw for k in k8s.objects if k[0].plural == "events" and k[1] == NS]
    return [e for e in events if e["reason"] == "BudgetThresholdCrossed"]


async def test_sidecar_spend_reaches_budget_status_and_each_threshold_alerts_once(kmock):
    declare_resources(kmock)
    async with serving(FakeSidecars()) as fake:
        hook_url = base64.b64encode(f"http://127.0.0.1:{fake.port}/hook".encode()).decode()
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "budget-hook"},
            "data": {"url": hook_url},
        }
        await post(kmock, f"/api/v1/namespaces/{NS}/secrets", secret)
        for name, ip, injected in [
            ("chat-1", "127.0.0.1", True),
            ("chat-2", "127.0.0.1", True),
            ("chat-3", "127.0.0.2", True),  # nothing listens there: counted, skipped
            ("plain", "127.0.0.1", False),  # not injected: never scraped
        ]:
            await post(kmock, f"/api/v1/namespaces/{NS}/pods", pod(name, ip, injected=injected))
        await post(kmock, f"/apis/sluicegate.io/v1alpha1/namespaces/{NS}/budgetpolicies", POLICY)
        fake.spent = 3.0
        spend = SpendSettings(
            interval_seconds=0.3,
            metrics_port=fake.port,
            timeout_seconds=1.0,
            # the hook listens on loopback: only an allow-listed target may be (issue 13)
            webhook_policy=WebhookPolicy.build(["127.0.0.1/32"]),
        )
        opts = RunOptions(
            all_namespaces=True, server=str(kmock.url), standalone=True, liveness=None, fast=True, spend=spend
        )
        async with running(lambda stop: run(opts, stop_flag=stop)):

            def reported():
                window = status(kmock)["windows"][0]
                assert (window["spentUSD"], window["limitUSD"], window["remainingUSD"]) == (6, 10, 4)
                return alert_events(kmock)

            [event] = await eventually(reported)
            assert event["type"] == "Warning"
            assert event["involvedObject"]["kind"] == "BudgetPolicy"
            assert "50% of the monthly limit" in event["message"]
            condition = next(c for c in status(kmock)["conditions"] if c["type"] == "SpendReported")
            assert condition["message"].startswith("2 of 3 sidecars reported; 1 did not: chat-3 (")
            assert status(kmock)["lastAlertThreshold"] == 0.5
            hooks = next(c for c in status(kmock)["conditions"] if c["type"] == "AlertWebhooks")
            assert (hooks["status"], hooks["reason"], hooks["message"]) == (
                "True",
                "Allowed",
                "1 alert webhook allowed",
            )
            await eventually(lambda: len(fake.hooks) == 1)
            assert "50% of the monthly limit" in fake.hooks[0]["text"]

            fake.spent = 4.5
            await eventually(
                lambda: len(alert_events(kmock)) == 2 and status(kmock)["lastAlertThreshold"] == 0.8
            )
            assert status(kmock)["windows"][0]["spentUSD"] == 9
            await settle(1.5)  # several more ticks at the same spend
            assert len(alert_events(kmock)) == 2
            assert len(fake.hooks) == 2
            policy = read_object(kmock, "sluicegate.io/v1alpha1/budgetpolicies", NS, "monthly")
            memory = json.loads(policy["metadata"]["annotations"]["sluicegate.io/alerted-thresholds"])
            assert memory["month"]["threshold"] == 0.8


async def test_a_webhook_whose_secret_is_missing_is_reported_as_an_event_without_stopping_the_status(kmock):
    declare_resources(kmock)
    async with serving(FakeSidecars()) as fake:
        await post(kmock, f"/api/v1/namespaces/{NS}/pods", pod("chat-1", "127.0.0.1"))
        await post(kmock, f"/apis/sluicegate.io/v1alpha1/namespaces/{NS}/budgetpolicies", POLICY)
        fake.spent = 9.0
        spend = SpendSettings(interval_seconds=0.3, metrics_port=fake.port, timeout_seconds=1.0)
        opts = RunOptions(
            all_namespaces=True, server=str(kmock.url), standalone=True, liveness=None, fast=True, spend=spend
        )
        async with running(lambda stop: run(opts, stop_flag=stop)):

            def failed():
                events = [
                    kmock.objects[k].raw for k in kmock.objects if k[0].plural == "events" and k[1] == NS
                ]
                return [e for e in events if e["reason"] == "AlertWebhookFailed"]

            [event] = await eventually(failed)
            assert event["message"] == "alert webhook from Secret budget-hook failed: Secret not found"
            assert status(kmock)["windows"][0]["spentUSD"] == 9
            assert [e["message"][:40] for e in alert_events(kmock)] == [
                "BudgetPolicy team-a/monthly: 80% of the "
            ]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/iam", "169.254.169.254 is link-local"),
        (
            "https://kubernetes.default.svc/api/v1/secrets",
            "'kubernetes.default.svc' is a cluster-internal name",
        ),
        ("http://127.0.0.1:{port}/hook", "127.0.0.1 is a loopback address"),
    ],
    ids=["metadata-service", "api-server", "loopback-hook"],
)
async def test_a_webhook_aimed_inside_the_cluster_is_refused_and_the_policy_condition_says_why(
    kmock, url, why
):
    declare_resources(kmock)
    async with serving(FakeSidecars()) as fake:
        hook_url = base64.b64encode(url.format(port=fake.port).encode()).decode()
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "budget-hook"},
            "data": {"url": hook_url},
        }
        await post(kmock, f"/api/v1/namespaces/{NS}/secrets", secret)
        await post(kmock, f"/api/v1/namespaces/{NS}/pods", pod("chat-1", "127.0.0.1"))
        await post(kmock, f"/apis/sluicegate.io/v1alpha1/namespaces/{NS}/budgetpolicies", POLICY)
        fake.spent = 9.0
        spend = SpendSettings(interval_seconds=0.3, metrics_port=fake.port, timeout_seconds=1.0)
        opts = RunOptions(
            all_namespaces=True, server=str(kmock.url), standalone=True, liveness=None, fast=True, spend=spend
        )
        async with running(lambda stop: run(opts, stop_flag=stop)):

            def refused():
                [hooks] = [c for c in status(kmock).get("conditions", []) if c["type"] == "AlertWebhooks"]
                assert (hooks["status"], hooks["reason"]) == ("False", "WebhookRefused")
                return hooks["message"]

            message = await eventually(refused)
            assert message.startswith("Secret budget-hook key url: refused: ") and why in message
            assert "meta-data" not in message and "/api/v1" not in message  # never the URL itself

            def refusal_events():
                events = [
                    kmock.objects[k].raw for k in kmock.objects if k[0].plural == "events" and k[1] == NS
                ]
                return [e for e in events if e["reason"] == "AlertWebhookRefused"]

            [event] = await eventually(refusal_events)
            assert why in event["message"]
            assert alert_events(kmock)  # the threshold alert itself is still an Event
            assert fake.hooks == []
