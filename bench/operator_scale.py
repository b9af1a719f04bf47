"""The operator at N namespaces, on an emulated API server (kmock): not a test, run by hand.

    .venv/bin/python bench/operator_scale.py --namespaces 200 [--idle-seconds 60] [--json out.json]

Starts the emulator (bench/kmockcluster.py: N namespaces of examples/ resources) in a subprocess, then
the real ``sluicegate operator`` CLI in another subprocess against it (a kubeconfig on loopback), and
reports: cold convergence (every namespace sealed), time to quiet, idle API requests per second; a quiet
restart (time to the first reconcile, to a tenant's edit being served, to quiet); a restart after the
signing key was rotated while the operator was down (every namespace resealed); per phase the
operator's peak RSS and CPU seconds, the emulator's CPU seconds, and the liveness probe's worst latency
throughout. Extra operator flags go after ``--``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
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
from kmockcluster import namespace_name

from sluicegate_contract.keyring import decode_signing_ring, encode_signing_ring, rotate_signing_ring

ROOT = Path(__file__).resolve().parents[1]
EMULATOR = Path(__file__).resolve().parent / "kmockcluster.py"
SIGNING = "/api/v1/namespaces/sluicegate-system/secrets/sluicegate-signing-keys"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Probe:
    """Polls the liveness endpoint and the emulator's counters once a second."""

    def __init__(self, session: aiohttp.ClientSession, api: str, liveness: str) -> None:
        self.session, self.api, self.liveness = session, api, liveness
        self.worst = 0.0
        self.failures = 0

    async def stats(self, kid: str = "") -> dict[str, int]:
        async with self.session.get(f"{self.api}/_bench/stats", params={"kid": kid} if kid else None) as r:
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
    live_port = free_port()
    attached = args.attach is not None  # PORT:PID of an emulator an earlier run left (its cold phase done)
    api_port, emulator_pid = map(int, args.attach.split(":")) if attached else (free_port(), 0)
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
    emulator = None
    if not attached:
        emulator = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, str(EMULATOR), "--port", str(api_port), "--namespaces", str(n)],
            stdout=subprocess.PIPE,
        )
        emulator_pid = emulator.pid
    result: dict[str, Any] = {"namespaces": n, "log": str(log)}
    try:
        if emulator is not None:
            assert emulator.stdout is not None
            await asyncio.to_thread(emulator.stdout.readline)
        api = f"http://127.0.0.1:{api_port}"
        async with aiohttp.ClientSession() as session:
            probe = Probe(session, api, f"http://127.0.0.1:{live_port}/healthz")
            stop = asyncio.Event()
            watcher = asyncio.create_task(probe.watch_liveness(stop))
            run = Runner(args, extra, probe, session, kubeconfig, live_port, log, result, emulator_pid)
            try:
                if not attached:
                    await run.cold()
                await run.restart()
                await run.restart_after_key_rotation()
            finally:
                stop.set()
                await watcher
            result["liveness_worst_seconds"] = round(probe.worst, 3)
            result["liveness_unanswered"] = probe.failures  # while the operator starts or stops
            result["operator_log_lines"] = sum(1 for _ in log.open("rb"))
        result["emulator_cpu_seconds"] = round(cpu_seconds(emulator_pid), 1)
    finally:
        if emulator is not None:
            emulator.send_signal(signal.SIGTERM)
            emulator.wait(30)
    return result


class Runner:
    """The phases, each with its own operator process; figures go into ``result``."""

    def __init__(
        self,
        args: argparse.Namespace,
        extra: list[str],
        probe: Probe,
        session: aiohttp.ClientSession,
        kubeconfig: Path,
        live_port: int,
        log: Path,
        result: dict[str, Any],
        emulator_pid: int,
    ) -> None:
        self.args, self.extra, self.probe, self.session = args, extra, probe, session
        self.kubeconfig, self.live_port, self.log, self.result = kubeconfig, live_port, log, result
        self.emulator_pid = emulator_pid
        self.n: int = args.namespaces

    @contextlib.asynccontextmanager
    async def operator(self, phase: str) -> Any:
        """One operator process for ``phase``; its CPU, peak RSS and the emulator's CPU are recorded."""
        emulator_cpu = cpu_seconds(self.emulator_pid)
        operator = await asyncio.to_thread(
            start_operator, self.kubeconfig, self.live_port, self.extra, self.log
        )
        try:
            yield operator
            self.result[f"{phase}_peak_rss_mib"] = round(peak_rss_mib(operator.pid), 1)
            self.result[f"{phase}_operator_cpu_seconds"] = round(cpu_seconds(operator.pid), 1)
            self.result[f"{phase}_emulator_cpu_seconds"] = round(
                cpu_seconds(self.emulator_pid) - emulator_cpu, 1
            )
        finally:
            operator.send_signal(signal.SIGTERM)
            await asyncio.to_thread(operator.wait, 60)

    async def sealed(self, kid: str = "") -> int:
        return (await self.probe.stats(kid))["configs"]

    async def cold(self) -> None:
        args, probe, result = self.args, self.probe, self.result
        async with self.operator("cold"):

            async def all_sealed() -> bool:
                return await self.sealed() >= self.n

            started = time.monotonic()
            converged = await until(all_sealed, args.timeout)
            result["cold_convergence_seconds"] = None if converged is None else round(converged, 1)
            converged_stats = await probe.stats()
            result["cold_requests"] = converged_stats["requests"]
            result["cold_reconciles"] = converged_stats["reconcile_lists"]
            quiet = await quiet_after(probe, args.timeout)
            result["cold_to_quiet_seconds"] = None if quiet is None else round(time.monotonic() - started, 1)
            await quiet_after(probe, args.timeout, counter="writes")  # the spend refresh's first round
            before = await probe.stats()
            await asyncio.sleep(args.idle_seconds)
            after = await probe.stats()
            span = args.idle_seconds
            result["idle_requests_per_second"] = round((after["requests"] - before["requests"]) / span, 2)
            result["idle_writes_per_second"] = round((after["writes"] - before["writes"]) / span, 2)

    async def restart(self) -> None:
        """A quiet restart, with a tenant's edit to the namespace the wave reaches last."""
        args, probe, result, session = self.args, self.probe, self.result, self.session
        base = await probe.stats()
        last = namespace_name(self.n - 1)
        async with self.operator("restart"):
            started = time.monotonic()

            async def first_reconcile() -> bool:
                return (await probe.stats())["reconcile_lists"] > base["reconcile_lists"]

            first = await until(first_reconcile, args.timeout, 0.2)
            result["restart_to_first_reconcile_seconds"] = None if first is None else round(first, 1)
            edited = time.monotonic()
            tier = f"{probe.api}/apis/sluicegate.io/v1alpha1/namespaces/{last}/routingtiers/light"
            headers = {"Content-Type": "application/merge-patch+json"}
            async with session.patch(tier, data=json.dumps({"spec": {"rank": 3}}), headers=headers) as r:
                assert r.status == 200, await r.text()

            async def edit_served() -> bool:
                url = f"{probe.api}/api/v1/namespaces/{last}/secrets/sluicegate-config"
                async with session.get(url) as r:
                    body = await r.json()
                    config = json.loads(base64.b64decode(body["data"]["config.json"]))
                    return any(t["name"] == "light" and t["rank"] == 3 for t in config["tiers"])

            served = await until(edit_served, args.timeout, 0.2)
            result["tenant_edit_during_restart_served_seconds"] = (
                None if served is None else round(time.monotonic() - edited, 1)
            )

            async def wave_done() -> bool:
                return (await probe.stats())["reconcile_lists"] - base["reconcile_lists"] >= self.n

            await until(wave_done, args.timeout)
            quiet = await quiet_after(probe, args.timeout)
            result["restart_to_quiet_seconds"] = (
                None if quiet is None else round(time.monotonic() - started, 1)
            )
            result["restart_reconciles"] = (await probe.stats())["reconcile_lists"] - base["reconcile_lists"]

    async def rotate_signing_key(self) -> str:
        """What ``Keystore.rotate_signing_key`` does, done while no operator runs."""
        async with self.session.get(self.probe.api + SIGNING) as r:
            secret = await r.json()
        ring = rotate_signing_ring(decode_signing_ring(base64.b64decode(secret["data"]["keys.json"])))
        patch = {"data": {"keys.json": base64.b64encode(encode_signing_ring(ring)).decode()}}
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.session.patch(self.probe.api + SIGNING, data=json.dumps(patch), headers=headers) as r:
            assert r.status == 200, await r.text()
        return ring.active.kid

    async def restart_after_key_rotation(self) -> None:
        """The whole-cluster change: every namespace must be resealed with the new signing key."""
        args, probe, result = self.args, self.probe, self.result
        kid = await self.rotate_signing_key()
        async with self.operator("rotated"):
            started = time.monotonic()

            async def all_resealed() -> bool:
                return await self.sealed(kid) >= self.n

            resealed = await until(all_resealed, args.timeout)
            result["rotated_restart_all_resealed_seconds"] = None if resealed is None else round(resealed, 1)
            quiet = await quiet_after(probe, args.timeout)
            result["rotated_restart_to_quiet_seconds"] = (
                None if quiet is None else round(time.monotonic() - started, 1)
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--namespaces", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="per phase")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument(
        "--attach",
        metavar="PORT:PID",
        help="use a running bench/kmockcluster.py whose namespaces are sealed; "
        "skip the cold phase (the restarts only)",
    )
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    figures = asyncio.run(drive(args, extra))
    figures["machine"] = f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end (shared)"
    figures["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
