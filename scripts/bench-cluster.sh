#!/usr/bin/env bash
# The issue-8/9 benchmarks, in one run: durable acks per second and p99 ack /
# delivery latency for the embedded SQLite node and for 1, 2 and 3 nodes on
# one PostgreSQL (a private instance on this machine), then forwarding's
# cost (scripts/bench-forwarding.sh: 1000 drivers at 1 Hz to a sink answering
# in 20 ms, five pairs with and without). Prints every
# bench report; figures go to docs/benchmarks.md by hand.
#
#   scripts/bench-cluster.sh [DURATION_SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20}
secret=bench
bin=./target/release/wecare-rt
cargo build --release --bin wecare-rt --quiet

work=$(mktemp -d /tmp/wecare-bench.XXXXXX)
chmod 755 "$work"  # the private PostgreSQL runs as user postgres inside it
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/pg-instance.sh stop "$work/pg" || true
  rm -rf "$work"
}
trap cleanup EXIT
admin=$(scripts/pg-instance.sh start "$work/pg")

port=3200
# start_node NAME EXTRA_ENV... ; sets NODE_URL and NODE_PID
start_node() {
  local name=$1; shift
  port=$((port + 1))
  env JWT_SECRET=$secret RATE_LIMIT_PER_SEC=100000 HOST=127.0.0.1 PORT=$port \
    DATA_DIR="$work/$name" RUST_LOG=warn "$@" $bin serve >"$work/$name.log" 2>&1 &
  NODE_PID=$!
  pids+=("$NODE_PID")
  NODE_URL=http://127.0.0.1:$port
  for _ in $(seq 1 100); do curl -sf "$NODE_URL/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "node $name did not become ready" >&2; cat "$work/$name.log" >&2; exit 1
}
stop_nodes() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
new_db() {
  local db="wecare_bench_$1"
  psql -X -q -d "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  echo "${admin%/*}/$db"
}
bench() { $bin bench --jwt-secret $secret --warmup 3 --duration "$duration" "$@"; }

run_case() { # LABEL NODES BACKEND
  local label=$1 n=$2 backend=$3 urls=() spids=() db=""
  [ "$backend" = pg ] && db=$(new_db "$label")
  for i in $(seq 1 "$n"); do
    if [ "$backend" = pg ]; then start_node "$label-$i" DATABASE_URL="$db"; else start_node "$label-$i"; fi
    urls+=("$NODE_URL"); spids+=("$NODE_PID")
  done
  local u; u=$(IFS=,; echo "${urls[*]}"); local p; p=$(IFS=,; echo "${spids[*]}")
  echo "### $label: max rate, 100 drivers + 10 watchers"
  bench --url "$u" --server-pid "$p" --drivers 100 --watchers 10 --max-rate --in-flight 8
  echo "### $label: 1000 fixes/s (100 drivers at 10 Hz) + 10 watchers"
  bench --url "$u" --server-pid "$p" --drivers 100 --watchers 10 --rate 10
  stop_nodes
}

run_case sqlite 1 sqlite
run_case pg1 1 pg
run_case pg2 2 pg
run_case pg3 3 pg

echo "### forwarding: 1000 drivers at 1 Hz + 10 watchers, without and with forwarding to a 20 ms sink"
scripts/bench-forwarding.sh 5 "$duration"
