#!/usr/bin/env bash
# make bench: Sluicegate beside a direct call, the Portkey gateway and the LiteLLM proxy, on the
# same fake upstream, in one run (../shared/bench/peers.sh does the driving; wrk generates load).
#
# Beyond the harness's steps, two of our own: `footprint` (bench/footprint.sh: each target's RSS fresh
# and after 10,000 requests, before anything else reaches it) and `latency` (the c=1 scenario again,
# LATENCY_DURATION seconds a repeat, for its p50/p90/p99 added over the direct call); `report`
# (bench/report.py) prints both as OUT_DIR/sluicegate.md; and `fleet` (bench/fleet.py: the sidecar with
# and without --budget-authority, against its own authority and throwaway PostgreSQL, CPU per request
# and latency while leases cover requests; OUT_DIR/fleet.json).
#
# usage: bench/run.sh [STEP...]   (default: all of them, in order; the harness's own step names work)
# Knobs: TARGETS="direct portkey litellm" (sluicegate is always added), DURATION, REPEATS,
# SCENARIOS (see peers.sh), BENCH_DIR=/tmp/sluicegate-bench, SLUICEGATE_PORT=8470,
# SLUICEGATE_ARGS (extra sidecar flags, e.g. --ledger-sync), FOOTPRINT_REQUESTS=10000,
# LATENCY_DURATION=15, FLEET_DURATION=10, FLEET_REPEATS=4 (even).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/bench/peers.sh}
BENCH_DIR=${BENCH_DIR:-/tmp/sluicegate-bench}
PORT=${SLUICEGATE_PORT:-8470}
OPS_PORT=${SLUICEGATE_OPS_PORT:-9470}
if [[ ! -f $PEERS ]]; then
  echo "bench: $PEERS not found (the shared bench harness sits beside the repo)" >&2
  exit 1
fi
rm -rf "$BENCH_DIR/config" "$BENCH_DIR/ledger"
mkdir -p "$BENCH_DIR"
# the fake upstream's port (UPSTREAM_PORT, as peers.sh reads it) in the connection's base URL
sed "s#127.0.0.1:9000/#127.0.0.1:${UPSTREAM_PORT:-9000}/#" "$ROOT/bench/resources.yaml" >"$BENCH_DIR/resources.yaml"
"$ROOT/.venv/bin/sluicegate" render -f "$BENCH_DIR/resources.yaml" -o "$BENCH_DIR/config" --namespace bench
export TARGETS=${TARGETS:-"direct portkey litellm"}
export EXTRA_TARGET_NAME=sluicegate
export EXTRA_TARGET_URL=http://127.0.0.1:$PORT
export EXTRA_TARGET_START="$ROOT/.venv/bin/sluicegate sidecar --config $BENCH_DIR/config --port $PORT --ops-port $OPS_PORT --ledger-dir $BENCH_DIR/ledger ${SLUICEGATE_ARGS:-}"
export PEERS_DIR=${PEERS_DIR:-/tmp/peers}
export OUT_DIR=${OUT_DIR:-$PEERS_DIR/results/$(date +%Y%m%d-%H%M%S)}
STEPS=(install start versions footprint check capacity run latency ttfb summarize report stop fleet)
if [[ $# -eq 0 || $* == all ]]; then
  set -- "${STEPS[@]}"
  trap 'bash "$PEERS" stop' EXIT  # whatever fails, the started processes are stopped
fi
for step in "$@"; do
  case $step in
    footprint) SHARED_BENCH=$(dirname "$PEERS") TARGETS="$TARGETS $EXTRA_TARGET_NAME" bash "$ROOT/bench/footprint.sh" ;;
    latency) OUT_DIR=$OUT_DIR/c1 SCENARIOS=chat_c1 DURATION=${LATENCY_DURATION:-15} bash "$PEERS" run ;;
    report) "$ROOT/.venv/bin/python" "$ROOT/bench/report.py" "$OUT_DIR" ;;
    fleet) SHARED_BENCH=$(dirname "$PEERS") OUT_DIR=$OUT_DIR "$ROOT/.venv/bin/python" "$ROOT/bench/fleet.py" ;;
    *) bash "$PEERS" "$step" ;;
  esac
done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(lscpu | sed -n 's/^Model name: *//p')"
echo "ledger lines written during the run: $(cat "$BENCH_DIR"/ledger/*.jsonl 2>/dev/null | wc -l)"
"$ROOT/.venv/bin/sluicegate" ledger verify "$BENCH_DIR/ledger" || true
