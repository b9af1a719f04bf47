"""The operator at N namespaces, on an emulated API server (kmock): not a test, run by hand.

    .venv/bin/python bench/operator_scale.py --namespaces 200 [--idle-seconds 60] [--json out.json]

Starts kmock (tests/support/kmocksupport.py, with an index so lookups do not scan every object) in a
subprocess holding N namespaces of examples/ resources, then the real ``sluicegate operator`` CLI in
another subprocess against it (a kubeconfig on loopback), and reports: cold convergence (every namespace
sealed), time to quiet, idle API requests per second, a restart (time to the first reconcile, to a
tenant's edit being served, to quiet), the operator's peak RSS, and the liveness probe's worst latency
throughout. Extra operator flags go after ``--``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET_LISTS = "/budgetpolicies"  # each reconcile lists a namespace's BudgetPolicies once


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def namespace_name(i: int) -> str:
    return f"bench-{i:05d}"


# The emulator (runs in its own process: ``operator_scale.py serve``).


def emulator_class() -> Any:
    import kmock  # noqa: F401 (the test support below needs it imported first)
    from kmock._internal import enums

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
                return aiohttp.web.json_response({**self.counts, "configs": self.sealed()})
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

        def sealed(self) -> int:
            objects = self._objects._objects
            return sum(
                1
                for key in self.by_resource.get(self._secrets, ())
                if key[2] == "sluicegate-config" and not objects[key].deleted
            )

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
                        import base64

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


# The driver.


class Probe:
    """Polls the liveness endpoint and the emulator's counters once a second."""

    def __init__(self, session: aiohttp.ClientSession, api: str, liveness: str) -> None:
        self.session, self.api, self.liveness = session, api, liveness
        self.worst = 0.0
        self.failures = 0

    async def stats(self) -> dict[str, int]:
        async with self.session.get(f"{self.api}/_bench/stats") as r:
            result: dict[str, int] = await r.json()
            return result

    async def live(self) -> None:
        started = time.monotonic()
        try:
            async with self.session.get(self.liveness, timeout=aiohttp.ClientTimeout(total=10)) as r:
                await r.read()
                ok = r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            self.worst = max(self.worst, time.monotonic() - started)
        else:
            self.failures += 1

    async def watch_liveness(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.live()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


def start_operator(
    kubeconfig: Path, liveness_port: int, extra: list[str], log: Path
) -> subprocess.Popen[bytes]:
    args = [
        str(ROOT / ".venv/bin/sluicegate"), "operator", "--all-namespaces", "--standalone",
        "--kubeconfig", str(kubeconfig), "--liveness", f"http://127.0.0.1:{liveness_port}/healthz", *extra,
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def until(check: Any, limit: float, interval: float = 1.0) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(interval)
    return None


async def quiet_after(
    probe: Probe, limit: float, window: float = 10.0, counter: str = "reconcile_lists"
) -> float | None:
    """Seconds until ``counter`` (reconciles started) stood still for ``window`` seconds."""
    started = time.monotonic()
    last, since = (await probe.stats())[counter], time.monotonic()
    while time.monotonic() - started < limit:
        await asyncio.sleep(1.0)
        now = (await probe.stats())[counter]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= window:
            return since - started
    return None


async def drive(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    n = args.namespaces
    api_port, live_port = free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="operator-scale-"))
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "bench", "cluster": {"server": f"http://127.0.0.1:{api_port}"}}],
                "users": [{"name": "bench", "user": {"token": "bench"}}],
                "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
                "current-context": "bench",
            }
        )
    )
    log = work / "operator.log"
    emulator = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, __file__, "serve", "--port", str(api_port), "--namespaces", str(n)],
        stdout=subprocess.PIPE,
    )
    result: dict[str, Any] = {"namespaces": n, "log": str(log)}
    try:
        assert emulator.stdout is not None
        await asyncio.to_thread(emulator.stdout.readline)
        api = f"http://127.0.0.1:{api_port}"
        async with aiohttp.ClientSession() as session:
            probe = Probe(session, api, f"http://127.0.0.1:{live_port}/healthz")
            stop = asyncio.Event()
            watcher = asyncio.create_task(probe.watch_liveness(stop))
            try:
                await measure(args, extra, probe, session, kubeconfig, live_port, log, result)
            finally:
                stop.set()
                await watcher
            result["liveness_worst_seconds"] = round(probe.worst, 3)
            result["liveness_unanswered"] = probe.failures  # while the operator starts or stops
            result["operator_log_lines"] = sum(1 for _ in log.open("rb"))
        result["emulator_cpu_seconds"] = round(cpu_seconds(emulator.pid), 1)
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(30)
    return result


async def measure(
    args: argparse.Namespace,
    extra: list[str],
    probe: Probe,
    session: aiohttp.ClientSession,
    kubeconfig: Path,
    live_port: int,
    log: Path,
    result: dict[str, Any],
) -> None:
    n = args.namespaces
    operator = await asyncio.to_thread(start_operator, kubeconfig, live_port, extra, log)
    try:

        async def all_sealed() -> bool:
            return (await probe.stats())["configs"] >= n

        started = time.monotonic()
        converged = await until(all_sealed, args.timeout)
        result["cold_convergence_seconds"] = None if converged is None else round(converged, 1)
        result["cold_operator_cpu_seconds"] = round(cpu_seconds(operator.pid), 1)
        result["cold_requests"] = (await probe.stats())["requests"]
        quiet = await quiet_after(probe, args.timeout)
        result["cold_to_quiet_seconds"] = None if quiet is None else round(time.monotonic() - started, 1)
        await quiet_after(probe, args.timeout, counter="writes")  # the spend refresh's first round
        before = await probe.stats()
        await asyncio.sleep(args.idle_seconds)
        after = await probe.stats()
        result["idle_requests_per_second"] = round(
            (after["requests"] - before["requests"]) / args.idle_seconds, 2
        )
        result["idle_writes_per_second"] = round((after["writes"] - before["writes"]) / args.idle_seconds, 2)
        result["peak_rss_mib_cold"] = round(peak_rss_mib(operator.pid), 1)
    finally:
        operator.send_signal(signal.SIGTERM)
        await asyncio.to_thread(operator.wait, 60)

    base = await probe.stats()
    last = namespace_name(n - 1)
    operator = await asyncio.to_thread(start_operator, kubeconfig, live_port, extra, log)
    started = time.monotonic()
    try:

        async def first_reconcile() -> bool:
            return (await probe.stats())["reconcile_lists"] > base["reconcile_lists"]

        first = await until(first_reconcile, args.timeout, 0.2)
        result["restart_to_first_reconcile_seconds"] = None if first is None else round(first, 1)
        # A tenant's edit once the restart wave runs: the namespace named last, so the wave reaches it last.
        edited = time.monotonic()
        tier = f"{probe.api}/apis/sluicegate.io/v1alpha1/namespaces/{last}/routingtiers/light"
        headers = {"Content-Type": "application/merge-patch+json"}
        async with session.patch(tier, data=json.dumps({"spec": {"rank": 3}}), headers=headers) as r:
            assert r.status == 200, await r.text()

        async def edit_served() -> bool:
            url = f"{probe.api}/api/v1/namespaces/{last}/secrets/sluicegate-config"
            async with session.get(url) as r:
                import base64

                body = await r.json()
                config = json.loads(base64.b64decode(body["data"]["config.json"]))
                return any(t["name"] == "light" and t["rank"] == 3 for t in config["tiers"])

        served = await until(edit_served, args.timeout, 0.2)
        result["tenant_edit_during_restart_served_seconds"] = (
            None if served is None else round(time.monotonic() - edited, 1)
        )

        async def wave_done() -> bool:
            return (await probe.stats())["reconcile_lists"] - base["reconcile_lists"] >= n

        await until(wave_done, args.timeout)
        quiet = await quiet_after(probe, args.timeout)
        result["restart_to_quiet_seconds"] = None if quiet is None else round(time.monotonic() - started, 1)
        result["restart_reconciles"] = (await probe.stats())["reconcile_lists"] - base["reconcile_lists"]
        result["peak_rss_mib_restart"] = round(peak_rss_mib(operator.pid), 1)
        result["restart_operator_cpu_seconds"] = round(cpu_seconds(operator.pid), 1)
    finally:
        operator.send_signal(signal.SIGTERM)
        await asyncio.to_thread(operator.wait, 60)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "serve"])
    parser.add_argument("--namespaces", type=int, default=200)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="per phase")
    parser.add_argument("--json", help="also write the figures here")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.mode == "serve":
        asyncio.run(serve(args.port, args.namespaces))
        return 0
    figures = asyncio.run(drive(args, extra))
    figures["machine"] = f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
