"""make bench's fleet step: the sidecar's cost per request with and without ``--budget-authority``,
and with a budget split into 10,000 scopes.

Starts its own pieces on loopback: the shared harness's fake upstream, a throwaway PostgreSQL 13+
(the Debian server binaries, as the tests do), ``sluicegate authority`` and six sidecars on the same
config (bench/resources.yaml: a budget that never binds, so leases always cover requests): two local
("local", "local-b"), two in fleet mode ("fleet", "fleet-b"), and two loaded by bench/wrk_split.lua,
each request for the next of 10,000 users: "users", local on the same config (one scope), and "split",
whose budget is split by user (``splitBy: user``), so every request checks and charges its own scope
out of 10,000. Sidecars are pinned to CORE_GW; wrk, the upstream, the authority and PostgreSQL to
CORE_LOAD (in a cluster the authority and its database run in other Pods: what is measured is the
sidecar's cost).

Each compared pair is loaded at the same time (each turn the other one's wrk first; an even number of
turns, so each side goes first as often: the side whose wrk starts second has read up to ~2 % cheaper),
at c=1 and then at c=32, and each sidecar's CPU time per request is read from /proc: whatever else
slows the shared machine in a turn slows both sides of the pair alike, so the pair's ratio holds where
figures measured one after the other drifted by ±10 % between identical sidecars. The sidecars share
one hash seed (PYTHONHASHSEED, FLEET_HASH_SEED=0): two processes of one build on random seeds have
read a few per cent apart (their dicts laid out differently), which a pair would take for the code's.
Two sidecars are still not quite alike (the one started second has read up to a few points cheaper),
so fleet mode is compared in two pairs started in opposite orders (local then fleet; fleet-b then
local-b) and the figure is the median over both, and a control pair of the same build and config
(local-b against local) measures what a pair reads with nothing to find: the noise floor "within
noise" is judged against. The split budget is compared with "users" (the same requests: only the
scopes differ).
Prints a table (medians; both sides of a pair share the core, so the absolute figures are above a
sidecar's alone), the pairs' ratios and each sidecar's RSS after the turns (fleet mode's memory
beside local mode's), and writes OUT_DIR/fleet.json.

usage: .venv/bin/python bench/fleet.py [--duration S] [--repeats N (even)] [--out DIR]
Environment: SHARED_BENCH (the harness directory, default ../shared/bench), CORE_LOAD=0, CORE_GW=1,
FLEET_HASH_SEED=0.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
MODES = ("local", "fleet", "fleet-b", "local-b", "users", "split")  # started in this order
# Pairs loaded together: (base, compared). Both fleet pairs count towards fleet mode's figure.
PAIRS = {
    "fleet": ("local", "fleet"),
    "fleet-b": ("local-b", "fleet-b"),
    "control": ("local", "local-b"),
    "split": ("users", "split"),
}
# What is reported: (label, pairs whose turns' ratios it is the median of).
COMPARED = (
    ("fleet against local", ("fleet", "fleet-b")),
    ("control: local-b against local (one build, one config: the noise floor)", ("control",)),
    ("split against users", ("split",)),
)
SLUICEGATE = [sys.executable, "-m", "sluicegate_cli"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mib(pid: int) -> float:
    """The process's resident memory (VmRSS), MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:", 1)[1].split()[0]) / 1024


def wait_up(url: str, proc: subprocess.Popen[bytes], patience: float = 60.0) -> None:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in reversed(started):  # by PID, never by name
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


@contextlib.contextmanager
def postgres(core: str) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback, its processes pinned to ``core``; yields its URL
    (trust auth, user sg)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise SystemExit("fleet bench: no PostgreSQL server binaries (apt-get install postgresql)")
    bin_dir = Path(found[-1]).parent
    as_server = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="sg-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = free_port()
    data = root / "data"
    run = ["taskset", "-c", core, *as_server, str(bin_dir / "pg_ctl"), "-D", str(data)]
    subprocess.run([*as_server, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "sg"],
                   check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=100"
    subprocess.run(
        [*run, "-w", "-l", str(root / "log"), "-o", options, "start"], check=True, capture_output=True
    )
    try:
        with psycopg.connect(f"postgresql://sg@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        yield f"postgresql://sg@127.0.0.1:{port}/bench"
    finally:
        subprocess.run([*run, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def wrk(url: str, connections: int, seconds: float, lua: Path, core: str) -> dict[str, float]:
    return wrk_summary(start_wrk(url, connections, seconds, lua, core))


def start_wrk(url: str, connections: int, seconds: float, lua: Path, core: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["taskset", "-c", core, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
         "--timeout", "10s", "-s", str(lua), url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "BENCH_LABEL": "fleet"},
    )  # fmt: skip


def wrk_summary(proc: subprocess.Popen[str]) -> dict[str, float]:
    stdout, stderr = proc.communicate()
    found = re.search(r"^WRKJSON (.*)$", stdout, re.MULTILINE)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"wrk printed no summary:\n{stdout}\n{stderr}")
    summary: dict[str, float] = json.loads(found.group(1))
    return summary


def measure_pair(
    pair: list[tuple[str, str, int, Path]], connections: int, seconds: float, core: str
) -> list[dict[str, object]]:
    """Both sidecars of ``pair`` (mode, url, pid, wrk script) loaded at the same time for the same
    seconds, each by its own wrk: whatever else slows the machine slows both alike."""
    before = [cpu_seconds(pid) for _, _, pid, _ in pair]
    running = [start_wrk(url, connections, seconds, lua, core) for _, url, _, lua in pair]
    summaries = [wrk_summary(proc) for proc in running]
    rows: list[dict[str, object]] = []
    for (mode, _, pid, _), summary, started in zip(pair, summaries, before, strict=True):
        used = cpu_seconds(pid) - started
        errors = sum(
            int(summary[k]) for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout")
        )
        rows.append({
            "mode": mode,
            "connections": connections,
            "requests": int(summary["requests"]),
            "rps": summary["rps"],
            "p50_ms": summary["p50_ms"],
            "p99_ms": summary["p99_ms"],
            "cpu_ms_per_request": 1000 * used / max(1, int(summary["requests"])),
            "errors": errors,
        })  # fmt: skip
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=float(os.environ.get("FLEET_DURATION", 10)))
    p.add_argument("--repeats", type=int, default=int(os.environ.get("FLEET_REPEATS", 4)))
    p.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("OUT_DIR", str(Path(tempfile.gettempdir()) / "sluicegate-bench"))),
    )
    args = p.parse_args()
    if args.repeats < 2 or args.repeats % 2:
        p.error("--repeats must be even (each side of a pair starts its load first as often)")
    seed = os.environ.get("FLEET_HASH_SEED", "0")
    shared = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench"))
    lua = shared / "wrk_chat.lua"
    split_lua = ROOT / "bench" / "wrk_split.lua"
    core_load, core_gw = os.environ.get("CORE_LOAD", "0"), os.environ.get("CORE_GW", "1")
    work = Path(tempfile.mkdtemp(prefix="sg-bench-fleet-"))
    upstream_port = free_port()
    resources = (ROOT / "bench" / "resources.yaml").read_text()
    resources = resources.replace("127.0.0.1:9000/", f"127.0.0.1:{upstream_port}/")
    split = resources.replace("  action: BLOCK", "  action: BLOCK\n  splitBy: user")
    assert split != resources, "bench/resources.yaml: the budget's `action: BLOCK` line moved"
    for name, text in (("config", resources), ("config-split", split)):
        (work / f"{name}.yaml").write_text(text)
        subprocess.run([*SLUICEGATE, "render", "-f", str(work / f"{name}.yaml"), "-o", str(work / name),
                        "--namespace", "bench"], check=True, capture_output=True)  # fmt: skip
    rows: list[dict[str, object]] = []
    with postgres(core_load) as database_url, processes() as started:
        logs = (work / "logs").resolve()
        logs.mkdir()

        def launch(name: str, argv: list[str], core: str, **env: str) -> subprocess.Popen[bytes]:
            with (logs / f"{name}.log").open("wb") as log:
                proc = subprocess.Popen(
                    ["taskset", "-c", core, *argv], stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, **env},
                )  # fmt: skip
            started.append(proc)
            return proc

        fake = [sys.executable, str(shared / "fake_upstream.py"), "--port", str(upstream_port)]
        upstream = launch("upstream", fake, core_load)
        wait_up(f"http://127.0.0.1:{upstream_port}/health", upstream)
        authority_port = free_port()
        authority = launch("authority", [*SLUICEGATE, "authority", "--config", str(work / "config"),
                                         "--listen", f"127.0.0.1:{authority_port}"],
                           core_load, SLUICEGATE_DATABASE_URL=database_url)  # fmt: skip
        wait_up(f"http://127.0.0.1:{authority_port}/healthz", authority)
        sidecars: dict[str, tuple[str, subprocess.Popen[bytes], str]] = {}
        scripts = {mode: split_lua if mode in ("users", "split") else lua for mode in MODES}
        fleet_args = ["--budget-authority", f"http://127.0.0.1:{authority_port}"]
        for mode in MODES:  # in this order: each fleet pair's first-started side differs
            config = "config-split" if mode == "split" else "config"
            extra = fleet_args if mode.startswith("fleet") else []
            api, ops = free_port(), free_port()
            proc = launch(mode, [*SLUICEGATE, "sidecar", "--config", str(work / config), "--ledger-dir",
                                 str(work / f"ledger-{mode}"), "--port", str(api), "--ops-port", str(ops),
                                 "--no-access-log", *extra],
                          core_gw, SLUICEGATE_POD_NAMESPACE="bench", PYTHONHASHSEED=seed)  # fmt: skip
            wait_up(f"http://127.0.0.1:{ops}/readyz", proc)
            sidecars[mode] = (f"http://127.0.0.1:{api}", proc, f"http://127.0.0.1:{ops}")
        for mode, (url, _, _) in sidecars.items():  # warm up (all 10,000 users, all 10,000 scopes)
            wrk(url, 8, 3 if scripts[mode] is lua else 10, scripts[mode], core_load)
        authority_cpu = cpu_seconds(authority.pid)
        fleet_requests = 0
        for turn in range(args.repeats):
            for name, (first, second) in PAIRS.items():
                order = (first, second) if turn % 2 == 0 else (second, first)
                pair = [(mode, sidecars[mode][0], sidecars[mode][1].pid, scripts[mode]) for mode in order]
                for connections in (1, 32):
                    for row in measure_pair(pair, connections, args.duration, core_load):
                        row["turn"], row["pair"] = turn, name
                        rows.append(row)
                        if str(row["mode"]).startswith("fleet"):
                            fleet_requests += int(row["requests"])  # type: ignore[call-overload]
        authority_ms = 1000 * (cpu_seconds(authority.pid) - authority_cpu) / max(1, fleet_requests)
        rss = {mode: rss_mib(proc.pid) for mode, (_, proc, _) in sidecars.items()}
        metrics = httpx.get(sidecars["fleet"][2] + "/metrics", timeout=10).text
        up = re.search(r"^sluicegate_budget_authority_up (\S+)$", metrics, re.MULTILINE)
        split_metrics = httpx.get(sidecars["split"][2] + "/metrics", timeout=10).text
        scopes = sum(
            float(m.group(1))
            for m in re.finditer(r"^sluicegate_budget_scopes\{[^}]*\} (\S+)$", split_metrics, re.MULTILINE)
        )
    args.out.mkdir(parents=True, exist_ok=True)
    summary = report(rows, authority_ms, up.group(1) if up else "?", scopes, rss)
    (args.out / "fleet.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")
    print(summary["table"])
    if any(row["errors"] for row in rows):
        print(f"errors: see the logs in {work}/logs", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


def report(
    rows: list[dict[str, object]], authority_ms: float, up: str, scopes: float, rss: dict[str, float]
) -> dict[str, object]:
    lines = [
        "| sidecar | c | CPU ms/request (median) | p50 ms (median) | req/s (median) | errors |",
        "|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        for connections in (1, 32):
            picked = [r for r in rows if r["mode"] == mode and r["connections"] == connections]
            cpu = statistics.median(float(r["cpu_ms_per_request"]) for r in picked)  # type: ignore[arg-type]
            p50 = statistics.median(float(r["p50_ms"]) for r in picked)  # type: ignore[arg-type]
            rps = statistics.median(float(r["rps"]) for r in picked)  # type: ignore[arg-type]
            errors = sum(int(r["errors"]) for r in picked)  # type: ignore[call-overload]
            lines.append(f"| {mode} | {connections} | {cpu:.3f} | {p50:.2f} | {rps:.0f} | {errors} |")
    lines.append("")
    figures: dict[str, dict[int, float]] = {}
    for label, names in COMPARED:
        parts = []
        figures[label] = {}
        for c in (32, 1):
            ratios = sorted(pair_ratios(rows, names, c))
            median = 100 * (statistics.median(ratios) - 1)
            figures[label][c] = median
            spread = ", ".join(f"{100 * (x - 1):+.1f}" for x in ratios)
            parts.append(f"c={c} {median:+.1f} % (turns {spread} %)")
        lines.append(f"{label}, CPU per request, paired (median): " + "; ".join(parts))
    lines.append(
        f"authority CPU per fleet request: {authority_ms:.3f} ms; sluicegate_budget_authority_up {up};"
        f" split: {scopes:.0f} budget scopes held (sluicegate_budget_scopes)"
    )
    lines.append("RSS after the turns, MiB: " + ", ".join(f"{mode} {mib:.1f}" for mode, mib in rss.items()))
    return {
        "table": "\n".join(lines),
        "authority_cpu_ms_per_request": authority_ms,
        "authority_up": up,
        "split_scopes": scopes,
        "rss_mib_after": rss,
        "paired_percent": {label: {f"c={c}": v for c, v in by_c.items()} for label, by_c in figures.items()},
    }


def pair_ratios(rows: list[dict[str, object]], names: tuple[str, ...], connections: int) -> list[float]:
    """Each turn's CPU per request of a pair's compared side over its base, for the pairs ``names``
    (both measured at the same time)."""
    found = []
    for name in names:
        base, compared = PAIRS[name]
        picked = [r for r in rows if r.get("pair") == name and r["connections"] == connections]
        for r in picked:
            if r["mode"] != compared:
                continue
            for b in picked:
                if b["mode"] == base and b["turn"] == r["turn"]:
                    found.append(float(r["cpu_ms_per_request"]) / float(b["cpu_ms_per_request"]))  # type: ignore[arg-type]
    return found


if __name__ == "__main__":
    raise SystemExit(main())
