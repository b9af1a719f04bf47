"""The operator's own watches on kmock: listed in pages, only the Secrets that matter reach the operator,
and never their data (issue 19: kopf held every object of the cluster in a worker of its own)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from kmock import KubernetesError

from sluicegate_operator.kube import Kube
from sluicegate_operator.kubeapi import load_configuration
from sluicegate_operator.objectwatch import JsonLines, ObjectWatch, WatchEvent, WatchSettings
from tests.support.examples_cluster import create, delete, patch
from tests.support.kmocksupport import SluicegateKubernetes, declare_resources, eventually, settle

pytestmark = pytest.mark.kmock(cls=SluicegateKubernetes)
WANTED = {("team-a", "openai-key"), ("team-b", "sluicegate-config")}


def secret(name, value="1"):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"apiKey": value}}


async def test_only_the_secrets_that_matter_reach_the_operator_listed_in_pages_and_without_their_data(kmock):
    declare_resources(kmock)
    for i in range(7):
        await create(kmock, "team-a" if i % 2 else "elsewhere", secret(f"unrelated-{i}"))
    await create(kmock, "team-a", secret("openai-key"))
    await create(kmock, "team-b", secret("sluicegate-config"))
    kube = Kube(await load_configuration(server=str(kmock.url)))
    seen: list[WatchEvent] = []
    watch = ObjectWatch(
        kube,
        "secrets",
        None,
        lambda ns, name: (ns, name) in WANTED,
        seen.append,
        WatchSettings(page=3, retry_delay=0.05),
    )
    task = asyncio.create_task(watch.run())
    try:
        await eventually(lambda: len(seen) == 2)
        assert {(e.type, e.namespace, e.name) for e in seen} == {
            (None, "team-a", "openai-key"),
            (None, "team-b", "sluicegate-config"),
        }
        assert watch.listed == 3  # 9 Secrets, 3 a page: never the whole listing at once
        listings = [r for r in list(kmock) if r.method == "GET" and r.url.path == "/api/v1/secrets"]
        assert listings and all(r.params.get("limit") == "3" or r.params.get("watch") for r in listings)

        await settle(0.3)  # the watch is open
        await create(kmock, "elsewhere", secret("tls-cert"))
        await patch(kmock, "Secret", "team-a", "unrelated-1", {"stringData": {"apiKey": "2"}})
        await patch(kmock, "Secret", "team-a", "openai-key", {"stringData": {"apiKey": "sk-new"}})
        await delete(kmock, "Secret", "team-b", "sluicegate-config")
        await eventually(lambda: len(seen) == 4)
        await settle(0.3)
        assert [(e.type, e.namespace, e.name) for e in seen[2:]] == [
            ("MODIFIED", "team-a", "openai-key"),
            ("DELETED", "team-b", "sluicegate-config"),
        ]
        assert all(e.version and e.body is None for e in seen)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await kube.close()


def test_a_watch_event_split_across_chunks_is_read_once_whole():
    lines = JsonLines()
    assert lines.feed(b'{"type": "ADDED", "object": {"metadata": {"na') == []
    assert lines.feed(b'me": "a"}}}\n\n{"type": "BOOKMARK"}\n{"type"') == [
        {"type": "ADDED", "object": {"metadata": {"name": "a"}}},
        {"type": "BOOKMARK"},
    ]
    assert lines.feed(b': "DELETED"}\n') == [{"type": "DELETED"}]


async def test_a_watch_the_api_server_calls_too_old_lists_again_and_goes_on(kmock):
    declare_resources(kmock)
    await create(kmock, "team-a", secret("openai-key"))
    refused = []

    def first_watch(request):
        if request.params.get("watch") and not refused:
            refused.append(request)
            return True
        return False

    def gone(request):
        raise KubernetesError(status=410, reason="Gone", message="too old resource version")

    kmock["get /api/v1/secrets"][first_watch] << gone
    kube = Kube(await load_configuration(server=str(kmock.url)))
    seen: list[WatchEvent] = []
    watch = ObjectWatch(
        kube,
        "secrets",
        None,
        lambda ns, name: (ns, name) in WANTED,
        seen.append,
        WatchSettings(retry_delay=0.05),
    )
    task = asyncio.create_task(watch.run())
    try:
        await eventually(lambda: watch.listed == 2)  # listed, refused a watch (410), listed again
        assert len(refused) == 1
        await settle(0.3)
        await patch(kmock, "Secret", "team-a", "openai-key", {"stringData": {"apiKey": "sk-new"}})
        await eventually(lambda: [e.type for e in seen] == [None, None, "MODIFIED"])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await kube.close()
