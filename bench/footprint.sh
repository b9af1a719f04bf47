#!/usr/bin/env bash
# RSS of each target when fresh and after FOOTPRINT_REQUESTS chat completions (default 10,000, at
# FOOTPRINT_CONNECTIONS=8), before anything else is sent to it: what one Pod's gateway holds once warm.
# Run by bench/run.sh between the harness's `start` and `check` steps; appends to $OUT_DIR/footprint.jsonl.
#
# Reads the harness's pid files and ports (../shared/bench/peers.sh): PEERS_DIR, TARGETS, CORE_LOAD,
# UPSTREAM_PORT, PORTKEY_PORT, LITELLM_PORT, EXTRA_TARGET_NAME, EXTRA_TARGET_URL.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHARED=${SHARED_BENCH:-$HERE/../../shared/bench}  # the harness, for wrk_chat.lua
PEERS_DIR=${PEERS_DIR:-/tmp/peers}
RUN_DIR=$PEERS_DIR/run
N=${FOOTPRINT_REQUESTS:-10000}
CONNS=${FOOTPRINT_CONNECTIONS:-8}
CORE_LOAD=${CORE_LOAD:-0}
UPSTREAM_PORT=${UPSTREAM_PORT:-9000}
UPSTREAM_URL=${UPSTREAM_URL:-http://127.0.0.1:$UPSTREAM_PORT/v1}
mkdir -p "$OUT_DIR"

url_of() {
  case $1 in
    direct) echo "http://127.0.0.1:$UPSTREAM_PORT" ;;
    portkey) echo "http://127.0.0.1:${PORTKEY_PORT:-8787}" ;;
    litellm) echo "http://127.0.0.1:${LITELLM_PORT:-4000}" ;;
    *) echo "${EXTRA_TARGET_URL%/}" ;;
  esac
}
headers_of() {
  case $1 in
    portkey) printf 'x-portkey-provider: openai\nx-portkey-custom-host: %s' "$UPSTREAM_URL" ;;
    litellm) printf 'Authorization: Bearer %s' "$(cat "$RUN_DIR/litellm.key")" ;;
    *) printf '' ;;
  esac
}
pid_of() { if [[ $1 == direct ]]; then cat "$RUN_DIR/upstream.pid"; else cat "$RUN_DIR/$1.pid"; fi; }
# rss_kib PID: VmRSS of PID and its direct children (as the harness counts it)
rss_kib() {
  local sum=0 p r
  for p in $1 $(ps -o pid= --ppid "$1" 2>/dev/null); do
    r=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    sum=$((sum + ${r:-0}))
  done
  echo "$sum"
}

for t in $TARGETS; do
  pid=$(pid_of "$t")
  fresh=$(rss_kib "$pid")
  count=($(BENCH_CHAT_LUA="$SHARED/wrk_chat.lua" BENCH_REQUESTS=$N BENCH_STREAM=0 BENCH_LABEL="$t/footprint" \
    BENCH_HEADERS=$(headers_of "$t") taskset -c "$CORE_LOAD" wrk -t1 -c"$CONNS" -d3600s --timeout 10s \
    -s "$HERE/wrk_count.lua" "$(url_of "$t")" | sed -n 's/^WRKCOUNT //p'))
  sleep 1
  after=$(rss_kib "$pid")
  printf '{"target":"%s","pid":%s,"rss_fresh_kib":%s,"rss_after_kib":%s,"requests":%s,"non_2xx":%s}\n' \
    "$t" "$pid" "$fresh" "$after" "${count[0]:-0}" "${count[1]:-0}" | tee -a "$OUT_DIR/footprint.jsonl"
done
