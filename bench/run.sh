#!/usr/bin/env bash
# make bench: Sluicegate beside a direct call, the Portkey gateway and the LiteLLM proxy, on the
# same fake upstream, in one run (../shared/bench/peers.sh does the driving; wrk generates load).
#
# Knobs: TARGETS="direct portkey litellm" (sluicegate is always added), DURATION, REPEATS,
# SCENARIOS (see peers.sh), BENCH_DIR=/tmp/sluicegate-bench, SLUICEGATE_PORT=8470,
# SLUICEGATE_ARGS (extra sidecar flags, e.g. --ledger-async).
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
"$ROOT/.venv/bin/sluicegate" render -f "$ROOT/bench/resources.yaml" -o "$BENCH_DIR/config" --namespace bench
export TARGETS=${TARGETS:-"direct portkey litellm"}
export EXTRA_TARGET_NAME=sluicegate
export EXTRA_TARGET_URL=http://127.0.0.1:$PORT
export EXTRA_TARGET_START="$ROOT/.venv/bin/sluicegate sidecar --config $BENCH_DIR/config --port $PORT --ops-port $OPS_PORT --ledger-dir $BENCH_DIR/ledger ${SLUICEGATE_ARGS:-}"
export PEERS_DIR=${PEERS_DIR:-/tmp/peers}
export OUT_DIR=${OUT_DIR:-$PEERS_DIR/results/$(date +%Y%m%d-%H%M%S)}
for step in "${@:-all}"; do
  bash "$PEERS" "$step"
done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(lscpu | sed -n 's/^Model name: *//p')"
echo "ledger lines written during the run: $(cat "$BENCH_DIR"/ledger/*.jsonl 2>/dev/null | wc -l)"
"$ROOT/.venv/bin/sluicegate" ledger verify "$BENCH_DIR/ledger" || true
