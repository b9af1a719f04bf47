"""The operator hosts the fleet budget authority and writes BudgetPolicy status from its accounts
(kopf on kmock, a real PostgreSQL; the "sidecars" are lease syncs sent to the hosted authority with
projected ServiceAccount tokens, which the emulated API server's TokenReview answers)."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from sluicegate_operator.authority.hosted import HostedAuthority
from sluicegate_operator.operator_run import RunOptions, run
from sluicegate_operator.spendscrape import SpendSettings
from tests.support.kmocksupport import (
    SluicegateKubernetes,
    declare_resources,
    eventually,
    read_object,
    running,
    script_token_reviews,
)
from tests.support.postgres import database_url, postgres_server
from tests.support.sidecar_harness import free_port

__all__ = ["database_url", "postgres_server"]

pytestmark = pytest.mark.kmock(cls=SluicegateKubernetes)
NS = "team-a"
POLICY = {
    "apiVersion": "sluicegate.io/v1alpha1",
    "kind": "BudgetPolicy",
    "metadata": {"name": "monthly", "namespace": NS},
    "spec": {"limits": [{"window": "month", "amountUSD": 10}], "action": "BLOCK"},
}


def status(k8s) -> dict[str, object]:
    obj = read_object(k8s, "sluicegate.io/v1alpha1/budgetpolicies", NS, "monthly")
    assert obj is not None
    return obj.get("status") or {}


TOKENS = {
    "token-a": {"username": f"system:serviceaccount:{NS}:chat", "audiences": ["sluicegate"]},
    "token-b": {"username": "system:serviceaccount:team-b:chat", "audiences": ["sluicegate"]},
    "token-other-audience": {"username": f"system:serviceaccount:{NS}:chat", "audiences": ["vault"]},
}


async def post_sync(
    session: aiohttp.ClientSession, url: str, sidecar: str, ask: dict[str, object], token: str | None
) -> tuple[int, dict]:
    body = {"namespace": NS, "sidecarId": sidecar, "asks": [ask]}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.post(f"{url}/v1/leases/sync", json=body, headers=headers) as response:
        return response.status, await response.json()


async def sync(session: aiohttp.ClientSession, url: str, sidecar: str, ask: dict[str, object]) -> dict:
    status, reply = await post_sync(session, url, sidecar, ask, "token-a")
    assert status == 200, reply
    return reply["leases"][0]


async def test_the_operator_serves_the_authority_and_budget_status_shows_settled_leased_and_holders_from_the_accounts(
    kmock, database_url: str
) -> None:
    declare_resources(kmock)
    script_token_reviews(kmock, TOKENS)
    resp = await kmock.post(f"/apis/sluicegate.io/v1alpha1/namespaces/{NS}/budgetpolicies", json=POLICY)
    assert resp.status in (200, 201), await resp.text()
    port = free_port()
    authority = HostedAuthority(database_url, "127.0.0.1", port, None, poll_seconds=0.2)
    opts = RunOptions(
        all_namespaces=True,
        server=str(kmock.url),
        standalone=True,
        liveness=None,
        fast=True,
        spend=SpendSettings(interval_seconds=0.3),
        authority=authority,
    )
    url = f"http://127.0.0.1:{port}"
    scope = {"policy": "monthly", "window": "month"}
    async with running(lambda stop: run(opts, stop_flag=stop)), aiohttp.ClientSession() as session:

        async def serves_the_namespace() -> bool:
            try:
                async with session.get(f"{url}/healthz") as response:
                    return NS in (await response.json())["namespaces"]
            except aiohttp.ClientError:
                return False

        deadline = asyncio.get_running_loop().time() + 10
        while not await serves_the_namespace():  # the operator renders and signs the config Secret
            assert asyncio.get_running_loop().time() < deadline, "the authority never served its config"
            await asyncio.sleep(0.05)

        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        ask = {"scope": scope, "wantMicroUsd": 1_000_000, "leastMicroUsd": 1}
        for token, expected in [(None, 401), ("token-other-audience", 401), ("token-b", 403)]:
            status_code, reply = await post_sync(session, url, first, ask, token)
            assert (status_code, reply["error"]) == (
                expected,
                "unauthorized" if expected == 401 else "forbidden",
            )
        lease = await sync(
            session, url, first, {"scope": scope, "wantMicroUsd": 3_000_000, "leastMicroUsd": 1}
        )
        assert lease["state"] == "open" and lease["amountMicroUsd"] == 3_000_000
        reported = {"scope": scope, "leaseId": lease["leaseId"], "settledMicroUsd": 1_500_000}
        await sync(session, url, first, {**reported, "limitMicroUsd": 3_000_000})
        await sync(session, url, second, {"scope": scope, "wantMicroUsd": 1_000_000, "leastMicroUsd": 1})

        def from_accounts():
            window = status(kmock)["windows"][0]
            assert (window["spentUSD"], window["leaseHolders"]) == (1.5, 2)
            return window

        window = await eventually(from_accounts)
        accounts_url = f"{url}/v1/accounts"
        async with session.get(accounts_url, params={"namespace": NS}) as response:
            assert response.status == 401  # no token, no accounts
        bearer = {"Authorization": "Bearer token-a"}
        async with session.get(accounts_url, params={"namespace": NS}, headers=bearer) as response:
            (account,) = (await response.json())["accounts"]
        assert window["reservedUSD"] == account["leasedMicroUsd"] / 1e6 > 0
        assert window["remainingUSD"] == (10_000_000 - 1_500_000 - account["leasedMicroUsd"]) / 1e6
        assert (window["limitUSD"], window["verdict"]) == (10, "ALLOW")
        condition = next(c for c in status(kmock)["conditions"] if c["type"] == "SpendReported")
        assert (condition["status"], condition["reason"]) == ("True", "Accounts")
