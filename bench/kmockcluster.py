"""kmock holding N namespaces of examples/ resources, for bench/operator_scale.py: run in its own process.

    .venv/bin/python bench/kmockcluster.py --port PORT --namespaces N

Prints ``ready`` once it listens. Built on tests/support/kmocksupport.py, with indexes so that a lookup
or a listing does not scan every object (kmock 0.8 does: those scans made the emulator, not the
operator, the bottleneck at thousands of namespaces). ``GET /_bench/stats`` answers the request
counters and how many namespaces hold a ``sluicegate-config`` Secret.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import sys
from pathlib import Path
from typing import Any

import aiohttp.web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET_LISTS = "/budgetpolicies"  # each reconcile lists a namespace's BudgetPolicies once


def namespace_name(i: int) -> str:
    return f"bench-{i:05d}"


def emulator_class() -> Any:
    import kmock  # noqa: F401 (the test support below needs it imported first)
    from kmock._internal import enums
    from kmock._internal.k8s import KubernetesEmulator

    from tests.support.kmocksupport import SluicegateKubernetes

    class RecentRequests(list[Any]):
        """kmock keeps every request and scans them for each reaction of each request: keep the last few."""

        def append(self, item: Any) -> None:
            super().append(item)
            if len(self) > 8:
                del self[:6]

    class IndexedKubernetes(SluicegateKubernetes):  # type: ignore[misc]
        def __attrs_post_init__(self) -> None:
            super().__attrs_post_init__()
            self._requests = RecentRequests()
            self.by_namespace: dict[tuple[Any, str | None], list[Any]] = {}
            self.by_resource: dict[Any, list[Any]] = {}
            self.counts = {"requests": 0, "reconcile_lists": 0, "writes": 0}

        def index(self, key: tuple[Any, str | None, str]) -> None:
            resource, namespace, _ = key
            self.by_namespace.setdefault((resource, namespace), []).append(key)
            self.by_resource.setdefault(resource, []).append(key)

        def _get_resources(self) -> list[Any]:
            """kmock adds the resource of every stored object, scanning them all on each request."""
            declared = set(super(KubernetesEmulator, self)._get_resources())
            return list(declared | self.by_resource.keys())

        def _KubernetesEmulator__get_objs(self, request: Any, strict: bool) -> list[Any]:
            objects = self._objects._objects
            if request.name is not None:
                found = objects.get((request.resource, request.namespace, request.name))
                return [] if found is None else [found]
            if request.namespace is not None:
                keys = self.by_namespace.get((request.resource, request.namespace), ())
            else:
                keys = self.by_resource.get(request.resource, ())
            return [objects[k] for k in keys]

        async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
            if raw.path == "/_bench/stats":
                kid = raw.query.get("kid")
                return aiohttp.web.json_response({**self.counts, "configs": self.sealed(kid)})
            self.counts["requests"] += 1
            if raw.method == "GET" and raw.path.endswith(BUDGET_LISTS) and "/namespaces/" in raw.path:
                self.counts["reconcile_lists"] += 1
            if raw.method in ("POST", "PATCH", "DELETE"):
                self.counts["writes"] += 1
            return await super().__call__(raw)

        async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
            response = await super()._handle(request)
            if request.action == enums.action.CREATE and request.resource is not None:
                meta = (request.data or {}).get("metadata") or {}
                key = (request.resource, request.namespace or meta.get("namespace"), meta.get("name"))
                if key in self._objects._objects and key not in self._known:
                    self._known.add(key)
                    self.index(key)
            return response

        _known: set[Any]

        def sealed(self, kid: str | None = None) -> int:
            """Namespaces holding a config Secret (signed with ``kid`` when given)."""
            objects = self._objects._objects
            count = 0
            for key in self.by_resource.get(self._secrets, ()):
                if key[2] != "sluicegate-config" or objects[key].deleted:
                    continue
                annotations = (objects[key].get("metadata") or {}).get("annotations") or {}
                count += kid is None or annotations.get("sluicegate.io/signing-key-id") == kid
            return count

        def populate(self, count: int) -> None:
            from tests.support.examples_cluster import example_objects

            self._known = set()
            docs = example_objects()
            for i in range(count):
                namespace = namespace_name(i)
                self.namespaces[namespace] = {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace, "uid": f"ns-{i}", "resourceVersion": self._next_rv()},
                }
                for doc in docs:
                    obj = copy.deepcopy(doc)
                    if obj["kind"] == "Secret":
                        path = "v1/secrets"
                    else:
                        path = f"sluicegate.io/v1alpha1/{obj['kind'].lower()}s".replace("ys", "ies")
                    meta = obj["metadata"]
                    meta.update(
                        namespace=namespace,
                        uid=f"{namespace}-{meta['name']}-{obj['kind']}",
                        creationTimestamp="2026-01-01T00:00:00Z",
                        generation=1,
                        resourceVersion=self._next_rv(),
                    )
                    if "stringData" in obj:
                        obj["data"] = {
                            k: base64.b64encode(str(v).encode()).decode()
                            for k, v in obj.pop("stringData").items()
                        }
                    self._objects[path, namespace, meta["name"]] = obj
            for key in list(self._objects._objects):
                self._known.add(key)
                self.index(key)

    return IndexedKubernetes


async def serve(port: int, count: int) -> None:
    from kmock._internal import apps

    from tests.support.kmocksupport import declare_resources

    cls = emulator_class()
    emulator = cls()
    declare_resources(emulator)
    emulator._secrets = next(r for r in emulator._get_resources() if r.plural == "secrets" and not r.group)
    emulator.populate(count)
    async with emulator, apps.Server(emulator, host="127.0.0.1", port=port):
        print("ready", flush=True)
        await asyncio.Event().wait()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--namespaces", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.namespaces))
    return 0


if __name__ == "__main__":
    sys.exit(main())
