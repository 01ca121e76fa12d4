#!/usr/bin/env bash
# A long steady run on PostgreSQL (issue 17): one node on a private
# PostgreSQL instance (same machine) takes 100 drivers + 10 watchers at a
# fixed total RATE (default 20 000 fixes/s, 80% of the durable maximum
# measured by bench-durable-max.sh) for MINUTES minutes, measured minute by
# minute on the same server and the same growing stream. Prints each
# minute's acks and p99 ack, and the last minute's p99 over the first's
# (issue 17: ≤ 1.2 — the p99 must not climb as the table grows).
#
#   scripts/bench-pg-steady.sh [RATE] [MINUTES]
#   WECARE_BIN=/path/to/an/older/wecare-rt scripts/bench-pg-steady.sh   (another binary)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-20000}
minutes=${2:-5}
secret=bench-pg-steady-0123456789abcdef0123
bin=${WECARE_BIN:-./target/release/wecare-rt}
[ -n "${WECARE_BIN:-}" ] || cargo build --release --bin wecare-rt --quiet

. scripts/bench-env.sh
bench_env pg-steady
port=3297
env JWT_SECRET=$secret RATE_LIMIT_PER_SEC=100000 HOST=127.0.0.1 PORT=$port DATABASE_URL="$pg_url" RUST_LOG=warn \
  $bin serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

per_driver=$(node -e "console.log($rate / 100)")
for m in $(seq 1 "$minutes"); do
  $bin bench --jwt-secret $secret --warmup 2 --duration 58 --url "http://127.0.0.1:$port" --server-pid "$server_pid" \
    --drivers 100 --watchers 10 --rate "$per_driver" --json >"$work/minute-$m.json" 2>/dev/null || true
  echo "minute $m of $minutes done" >&2
done

node - "$work" "$minutes" "$rate" <<'NODE'
const fs = require('fs');
const [dir, minutes, rate] = [process.argv[2], Number(process.argv[3]), process.argv[4]];
const p99 = [];
console.log(`| minute | acked/s | p99 ack | p50 ack | server CPU |`);
console.log('|---|---|---|---|---|');
for (let m = 1; m <= minutes; m++) {
  const r = JSON.parse(fs.readFileSync(`${dir}/minute-${m}.json`, 'utf8'));
  p99.push(r.ack_latency.p99_us / 1000);
  console.log(`| ${m} | ${r.updates.acked_per_sec.toFixed(0)} | ${(r.ack_latency.p99_us / 1000).toFixed(1)} ms | ` +
    `${(r.ack_latency.p50_us / 1000).toFixed(1)} ms | ${r.server.cpu_core_pct.toFixed(0)}% |`);
}
console.log(`\n${rate} fixes/s on PostgreSQL for ${minutes} min: last minute's p99 / first's = ` +
  `${(p99[p99.length - 1] / p99[0]).toFixed(2)} (issue 17: ≤ 1.2)`);
NODE
