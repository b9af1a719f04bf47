#!/usr/bin/env bash
# Paired A/B of two commits' sidecars: CPU per request and RSS, robust on a shared, loaded machine.
#
# Both sidecars (each commit's code, run by this worktree's venv) are pinned to CORE_GW and loaded at
# the same time by two wrk (CORE_LOAD) sending the same number of chat completions to the same fake
# upstream (../shared/bench/fake_upstream.py, from the harness's venv: `bash ../shared/bench/peers.sh
# install` once). Whatever else loads the machine loads both alike, so the ratio of their CPU per
# request (utime+stime from /proc over the counted requests) holds where absolute figures do not.
# Not a throughput or latency benchmark: `make bench` on a quiet machine is.
#
# usage: bench/ab_pair.sh [REF_A] [REF_B]   (default: main HEAD)
# Knobs: SHARED_BENCH=../shared/bench (beside the repo), PAIRS=5 (rounds; each runs c=32 then c=1), N32=10000, N1=3000, CORE_GW=1, CORE_LOAD=0,
# STREAM=1 (streamed chat completions instead, each round one run at c=8 of N8=8000),
# AB_DIR=/tmp/sluicegate-ab, AB_PORT=19400 (uses AB_PORT..AB_PORT+4), WARM=500 (warm-up requests),
# CHAT_LUA=$SHARED/wrk_chat.lua (the request; bench/wrk_split.lua sends each for another of 10,000
# users), SPLIT_B=1 (B's budget split by user, A's not: with REF_A = REF_B and CHAT_LUA=wrk_split.lua,
# the paired cost of 10,000 split scopes against one).
# Prints one line per run: each side's CPU ms/request, RSS fresh and after (KiB), wrk's count.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
PY=$ROOT/.venv/bin/python
A=${1:-main}
B=${2:-HEAD}
DIR=${AB_DIR:-/tmp/sluicegate-ab}
PORT=${AB_PORT:-19400}
CORE_GW=${CORE_GW:-1}
CORE_LOAD=${CORE_LOAD:-0}
UPSTREAM_PY=${UPSTREAM_PY:-${PEERS_DIR:-/tmp/peers}/bench-venv/bin/python}
if [[ ! -f $SHARED/fake_upstream.py || ! -x $UPSTREAM_PY ]]; then
  echo "ab_pair: needs $SHARED (set SHARED_BENCH) and $UPSTREAM_PY (peers.sh install)" >&2
  exit 1
fi
rm -rf "$DIR" && mkdir -p "$DIR/a" "$DIR/b"
git -C "$ROOT" archive "$A" | tar -x -C "$DIR/a"
git -C "$ROOT" archive "$B" | tar -x -C "$DIR/b"
sed "s#127.0.0.1:9000/#127.0.0.1:$PORT/#" "$ROOT/bench/resources.yaml" >"$DIR/resources.yaml"
"$ROOT/.venv/bin/sluicegate" render -f "$DIR/resources.yaml" -o "$DIR/config-a" --namespace bench >/dev/null
if [[ ${SPLIT_B:-0} == 1 ]]; then
  sed 's/^  action: BLOCK$/  action: BLOCK\n  splitBy: user/' "$DIR/resources.yaml" >"$DIR/resources-b.yaml"
  grep -q '^  splitBy: user$' "$DIR/resources-b.yaml" || { echo "ab_pair: no budget 'action: BLOCK' line to split" >&2; exit 1; }
  "$ROOT/.venv/bin/sluicegate" render -f "$DIR/resources-b.yaml" -o "$DIR/config-b" --namespace bench >/dev/null
else
  cp -r "$DIR/config-a" "$DIR/config-b"
fi

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
taskset -c "$CORE_LOAD" "$UPSTREAM_PY" "$SHARED/fake_upstream.py" --port "$PORT" >"$DIR/upstream.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "ab_pair: the fake upstream did not start" >&2; exit 1; }

start() {  # SIDE API_PORT OPS_PORT -> pid
  local src=$DIR/$1
  rm -rf "$DIR/ledger-$1"
  PYTHONPATH=$src/contract:$src/operator:$src/sidecar:$src/reports:$src/cli taskset -c "$CORE_GW" "$PY" -c \
    'import sys; from sluicegate_cli.main import main; sys.exit(main())' sidecar --config "$DIR/config-$1" \
    --port "$2" --ops-port "$3" --ledger-dir "$DIR/ledger-$1" >"$DIR/$1.out" 2>"$DIR/$1.err" &
  echo $!
}
load() {  # API_PORT CONNS N -> "count non_2xx"
  BENCH_CHAT_LUA=${CHAT_LUA:-$SHARED/wrk_chat.lua} BENCH_REQUESTS=$3 BENCH_STREAM=${STREAM:-0} taskset -c "$CORE_LOAD" \
    wrk -t1 -c"$2" -d600s --timeout 10s -s "$ROOT/bench/wrk_count.lua" "http://127.0.0.1:$1" 2>&1 |
    sed -n 's/^WRKCOUNT //p'
}
rss() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
per_req() { echo "scale=4; ($2-$1)*1000/$(getconf CLK_TCK)/$3" | bc; }

pair() {  # CONNS N
  local pa pb fa fb a0 b0 a1 b1 la lb
  pa=$(start a $((PORT + 1)) $((PORT + 2))); pb=$(start b $((PORT + 3)) $((PORT + 4)))
  PIDS+=("$pa" "$pb")
  for ops in $((PORT + 2)) $((PORT + 4)); do
    for _ in $(seq 150); do curl -sf "http://127.0.0.1:$ops/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  done
  sleep 1
  fa=$(rss "$pa"); fb=$(rss "$pb")
  load $((PORT + 1)) "$1" "${WARM:-500}" >/dev/null & la=$!
  load $((PORT + 3)) "$1" "${WARM:-500}" >/dev/null & lb=$!
  wait "$la" "$lb"  # warm-up
  a0=$(cpu "$pa"); b0=$(cpu "$pb")
  load $((PORT + 1)) "$1" "$2" >"$DIR/a.wrk" & la=$!
  load $((PORT + 3)) "$1" "$2" >"$DIR/b.wrk" & lb=$!
  wait "$la" "$lb"
  a1=$(cpu "$pa"); b1=$(cpu "$pb")
  sleep 1
  echo "c=$1 n=$2 $A: cpu_ms/req=$(per_req "$a0" "$a1" "$2") rss_fresh=$fa rss_after=$(rss "$pa") wrk=[$(cat "$DIR/a.wrk")]" \
    "| $B: cpu_ms/req=$(per_req "$b0" "$b1" "$2") rss_fresh=$fb rss_after=$(rss "$pb") wrk=[$(cat "$DIR/b.wrk")]"
  kill -TERM "$pa" "$pb"
  while kill -0 "$pa" 2>/dev/null || kill -0 "$pb" 2>/dev/null; do sleep 0.1; done  # drained, ports free
}

for _ in $(seq "${PAIRS:-5}"); do
  if [[ ${STREAM:-0} == 1 ]]; then
    pair 8 "${N8:-8000}"
  else
    pair 32 "${N32:-10000}"
    pair 1 "${N1:-3000}"
  fi
done
