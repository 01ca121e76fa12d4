#!/usr/bin/env bash
# Forwarding's cost (issue 9): 1000 drivers at 1 Hz + 10 watchers on one
# embedded node, without and with FORWARD_URL pointing at the bench's sink
# (answers 200 after 20 ms, like the WeCare backend). Runs PAIRS pairs, the
# order inside a pair alternating (off/on, on/off, ...) so a drift of the
# machine falls on both sides, and prints each run and the medians:
# forwarding's cost as the difference of the server's CPU, the forwarder
# thread's own CPU, and the change of the p99 ack latency.
#
#   scripts/bench-forwarding.sh [PAIRS] [DURATION_SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-5}
duration=${2:-20}
secret=bench
bin=./target/release/wecare-rt
cargo build --release --bin wecare-rt --quiet

work=$(mktemp -d /tmp/wecare-fwd-bench.XXXXXX)
node_pid=""
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=3290
sink=127.0.0.1:3299
run() { # MODE (off|on) RUN_NUMBER
  local mode=$1 n=$2 extra=() sinkargs=()
  if [ "$mode" = on ]; then
    # The worst case for the node: every driver forwarded every second, a
    # backend that takes it (no rate limit, so no budget to speak of).
    extra=(FORWARD_URL="http://$sink/api/driver-locations/{driverId}" FORWARD_MIN_INTERVAL_MS=1000
      BACKEND_MAX_CALLS_PER_MIN=1000000)
    sinkargs=(--sink "$sink" --sink-delay-ms 20)
  fi
  rm -rf "$work/data"
  env JWT_SECRET=$secret RATE_LIMIT_PER_SEC=100000 HOST=127.0.0.1 PORT=$port DATA_DIR="$work/data" \
    RUST_LOG=warn "${extra[@]}" $bin serve >"$work/node.log" 2>&1 &
  node_pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  $bin bench --jwt-secret $secret --warmup 3 --duration "$duration" --url "http://127.0.0.1:$port" \
    --server-pid "$node_pid" --drivers 1000 --watchers 10 --rate 1 --json "${sinkargs[@]}" \
    >"$work/$mode-$n.json"
  kill "$node_pid"; wait "$node_pid" 2>/dev/null || true; node_pid=""
}

for i in $(seq 1 "$pairs"); do
  if [ $((i % 2)) = 1 ]; then run off "$i"; run on "$i"; else run on "$i"; run off "$i"; fi
  echo "pair $i of $pairs done" >&2
done

node - "$work" "$pairs" <<'EOF'
const fs = require('fs');
const [dir, pairs] = [process.argv[2], Number(process.argv[3])];
const read = (mode, i) => JSON.parse(fs.readFileSync(`${dir}/${mode}-${i}.json`, 'utf8'));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const rows = [];
console.log('| pair | server CPU off → on | difference | forwarder thread | p99 ack off → on | change | forwards/s |');
console.log('|---|---|---|---|---|---|---|');
for (let i = 1; i <= pairs; i++) {
  const off = read('off', i), on = read('on', i);
  const cpu = [off.server.cpu_core_pct, on.server.cpu_core_pct];
  const fwd = on.server.threads_core_pct['wecare-forward'] ?? 0;
  const p99 = [off.ack_latency.p99_us / 1000, on.ack_latency.p99_us / 1000];
  const r = { diff: cpu[1] - cpu[0], fwd, change: (p99[1] / p99[0] - 1) * 100 };
  rows.push(r);
  console.log(`| ${i} | ${cpu[0].toFixed(1)}% → ${cpu[1].toFixed(1)}% | ${r.diff.toFixed(1)}% | ${fwd.toFixed(1)}% | ` +
    `${p99[0].toFixed(2)} → ${p99[1].toFixed(2)} ms | ${r.change >= 0 ? '+' : ''}${r.change.toFixed(1)}% | ${on.forwards.per_sec.toFixed(0)} |`);
}
const m = (k) => median(rows.map((r) => r[k]));
console.log(`\nmedians over ${pairs} pairs: server CPU difference ${m('diff').toFixed(1)}% of a core; ` +
  `forwarder thread ${m('fwd').toFixed(1)}% of a core; p99 ack change ${m('change') >= 0 ? '+' : ''}${m('change').toFixed(1)}%`);
EOF
