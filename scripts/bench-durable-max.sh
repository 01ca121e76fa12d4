#!/usr/bin/env bash
# The durable maximum (issue 17): open-loop steps of 100 drivers + 10
# watchers (a fixed total rate of fixes, sent whatever the acks do) against
#   bare      the calibration: our Socket.IO layer alone, no storage, no checks
#             (crates/sio/examples/bare_fanout.rs),
#   embedded  wecare-rt serve on the embedded store,
#   postgres  wecare-rt serve on PostgreSQL (a private instance, same machine),
# in the same run. A step holds when every fix was acked, the p99 ack is at
# most 100 ms and every watcher got every fix (a fan-out that drops what its
# watchers cannot take in time has not done the fan-out: the bare server
# drops a frame when a watcher's send queue is full, ours sends that watcher
# to a catch-up from storage); each server's maximum is its highest step that held (the
# steps go up until one fails). Prints every step, the maxima and the
# ratios issue 17 sets: embedded ≥ 0.8 × bare, postgres ≥ 0.5 × embedded.
#
#   scripts/bench-durable-max.sh [SECS_PER_STEP] [STEP ...]
#   KINDS="postgres" WECARE_BIN=/path/to/an/older/wecare-rt scripts/bench-durable-max.sh
#     (some of the three only; another binary, e.g. a release before a change)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(5000 10000 15000 20000 25000 30000 35000 40000 45000)
secret=bench-durable-max-0123456789abcdef
kinds=${KINDS:-bare embedded postgres}
bin=${WECARE_BIN:-./target/release/wecare-rt}
bare=./target/release/examples/bare_fanout
[ -n "${WECARE_BIN:-}" ] || cargo build --release --bin wecare-rt --quiet
cargo build --release -p wecare-sio --example bare_fanout --quiet

. scripts/bench-env.sh
bench_env durable-max
port=3295

start() { # KIND
  case $1 in
    bare) $bare "127.0.0.1:$port" >"$work/server.log" 2>&1 & ;;
    embedded) rm -rf "$work/data"
      env JWT_SECRET=$secret RATE_LIMIT_PER_SEC=100000 HOST=127.0.0.1 PORT=$port DATA_DIR="$work/data" \
        RUST_LOG=warn $bin serve >"$work/server.log" 2>&1 & ;;
    postgres) psql -q "$pg_url" -c "DROP DATABASE IF EXISTS durable" -c "CREATE DATABASE durable" >/dev/null
      env JWT_SECRET=$secret RATE_LIMIT_PER_SEC=100000 HOST=127.0.0.1 PORT=$port \
        DATABASE_URL="${pg_url%/*}/durable" RUST_LOG=warn $bin serve >"$work/server.log" 2>&1 & ;;
  esac
  server_pid=$!
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/socket.io/?EIO=4&transport=polling" && return 0
    sleep 0.1
  done
  echo "the $1 server did not start:" >&2; cat "$work/server.log" >&2; exit 1
}

for kind in $kinds; do
  for step in "${steps[@]}"; do
    start "$kind"
    rate=$(node -e "console.log($step / 100)")
    $bin bench --jwt-secret $secret --warmup 3 --duration "$secs" --url "http://127.0.0.1:$port" \
      --server-pid "$server_pid" --drivers 100 --watchers 10 --rate "$rate" --json >"$work/$kind-$step.json" \
      2>"$work/$kind-$step.err" || true
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
    held=$(node -e '
      const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8") || "null");
      const u = r && r.updates;
      const refused = u ? Object.values(u.rejected).reduce((a, b) => a + b, 0) : 0;
      console.log(u && u.acked >= u.sent && u.timeouts + refused + u.closed === 0 && r.ack_latency.p99_us <= 100000
        && r.deliveries.missing === 0 ? 1 : 0);
    ' "$work/$kind-$step.json" 2>/dev/null || echo 0)
    echo "$kind $step/s: $([ "$held" = 1 ] && echo held || echo failed)" >&2
    [ "$held" = 1 ] || break
  done
done

node - "$work" "${steps[@]}" <<'NODE'
const fs = require('fs');
const [dir, ...steps] = process.argv.slice(2);
const max = {};
console.log('| server | step (fixes/s) | acked/s | p99 ack | deliveries/s | missing | server CPU | held |');
console.log('|---|---|---|---|---|---|---|---|');
for (const kind of ['bare', 'embedded', 'postgres']) {
  for (const step of steps) {
    const file = `${dir}/${kind}-${step}.json`;
    if (!fs.existsSync(file)) break;
    let r = null;
    try { r = JSON.parse(fs.readFileSync(file, 'utf8')); } catch { /* a failed run */ }
    const u = r && r.updates;
    const refused = u ? Object.values(u.rejected).reduce((a, b) => a + b, 0) : 0;
    const held = !!u && u.acked >= u.sent && u.timeouts + refused + u.closed === 0 && r.ack_latency.p99_us <= 100000
      && r.deliveries.missing === 0;
    if (held) max[kind] = Number(step);
    const cell = (f) => (r ? f(r) : '—');
    console.log(`| ${kind} | ${step} | ${cell((r) => r.updates.acked_per_sec.toFixed(0))} | ` +
      `${cell((r) => (r.ack_latency.p99_us / 1000).toFixed(1) + ' ms')} | ${cell((r) => r.deliveries.per_sec.toFixed(0))} | ${cell((r) => r.deliveries.missing)} | ` +
      `${cell((r) => (r.server ? r.server.cpu_core_pct.toFixed(0) + '%' : '—'))} | ${held ? 'yes' : 'no'} |`);
  }
}
const m = (k) => max[k] ?? 0;
console.log(`\ndurable maximum: bare ${m('bare')}/s, embedded ${m('embedded')}/s, postgres ${m('postgres')}/s`);
console.log(`embedded / bare = ${(m('embedded') / m('bare')).toFixed(2)} (issue 17: ≥ 0.8)`);
console.log(`postgres / embedded = ${(m('postgres') / m('embedded')).toFixed(2)} (issue 17: ≥ 0.5)`);
NODE
