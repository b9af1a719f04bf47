"""Sluicegate's own bench tables, beside the harness's summary.md: the c=1 latency distribution (what
each gateway adds to p50, p90 and p99 over the direct call) and each gateway's memory, fresh and after
10,000 requests.

usage: report.py OUT_DIR   (reads OUT_DIR/c1/runs.jsonl and OUT_DIR/footprint.jsonl; writes
OUT_DIR/sluicegate.md and prints it)
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

PERCENTILES = ("p50_ms", "p90_ms", "p99_ms")


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def latency_table(runs: list[dict[str, Any]]) -> list[str]:
    """Medians over repeats of each percentile, and each minus the direct call's (added latency)."""
    by_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_target[run["target"]].append(run)
    if not by_target:
        return []
    median = {
        target: {key: statistics.median(run[key] for run in rs) for key in (*PERCENTILES, "rps")}
        for target, rs in by_target.items()
    }
    direct = median.get("direct")
    lines = [
        "c=1 latency distribution (chat, one connection; medians over repeats, added = minus direct):",
        "",
        "| target | req/s | p50 ms | p90 ms | p99 ms | added p50 ms | added p90 ms | added p99 ms "
        "| p99 per run | CPU ms/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for target, m in median.items():
        added = [
            f"{m[k] - direct[k]:+.3f}" if direct is not None and target != "direct" else "-"
            for k in PERCENTILES
        ]
        cpu = [run["proc_cpu_ms_per_req"] for run in by_target[target] if "proc_cpu_ms_per_req" in run]
        per_run = [round(run["p99_ms"], 2) for run in by_target[target]]
        lines.append(
            f"| {target} | {m['rps']:.0f} | {m['p50_ms']:.3f} | {m['p90_ms']:.3f} | {m['p99_ms']:.3f} | "
            f"{' | '.join(added)} | {per_run} | {statistics.median(cpu) if cpu else 0:.3f} |"
        )
    return lines


def footprint_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        "Memory (RSS of the process and its children), fresh and after its first requests:",
        "",
        "| target | RSS fresh MiB | RSS after MiB | requests |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['target']} | {row['rss_fresh_kib'] / 1024:.1f} | {row['rss_after_kib'] / 1024:.1f} "
            f"| {row['requests']:,} |"
        )
    return lines


def main(argv: list[str]) -> int:
    out = Path(argv[1])
    latency = latency_table(_lines(out / "c1" / "runs.jsonl"))
    footprint = footprint_table(_lines(out / "footprint.jsonl"))
    text = "\n".join([*latency, "", *footprint]).strip() + "\n"
    (out / "sluicegate.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
