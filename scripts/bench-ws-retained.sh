#!/usr/bin/env bash
# What a websocket keeps after a burst: K stock socket.io clients join the
# layer's echo server (crates/sio/examples/echo.rs), each is sent a burst of
# N frames of PAD bytes (about what a watcher's catch-up sends), and the
# server's resident memory is read before the burst and once it has settled
# after it. The difference per connection is what a burst leaves behind for
# the connection's life (the websocket library never shrinks its write
# buffer: WS_WRITE_BUFFER bounds it).
#
#   scripts/bench-ws-retained.sh [K=200] [N=2000] [PAD=400] [WS_WRITE_BUFFER=16384]
set -euo pipefail
K=${1:-200}
N=${2:-2000}
PAD=${3:-400}
WRITE_BUFFER=${4:-16384}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p wecare-sio --example echo
(cd "$root/tests/interop" && [ -d node_modules ] || npm ci --no-audit --no-fund -s)
echo_bin="$root/target/release/examples/echo"
"$echo_bin" 25000 20000 1048576 45000 10000 "$WRITE_BUFFER" >"${TMPDIR:-/tmp}/echo-retained.out" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
cd "$root/tests/interop"
ECHO_PID=$pid K=$K N=$N PAD=$PAD node --input-type=module -e '
import { io } from "socket.io-client";
import { readFileSync } from "node:fs";
const out = `${process.env.TMPDIR ?? "/tmp"}/echo-retained.out`;
const [K, N, PAD, pid] = ["K", "N", "PAD", "ECHO_PID"].map((k) => Number(process.env[k]));
const rssKiB = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);
let url;
for (let i = 0; i < 100 && !url; i += 1) {
  url = /listening on (\S+)/.exec(readFileSync(out, "utf8"))?.[1];
  if (!url) await new Promise((r) => setTimeout(r, 50));
}
const settle = () => new Promise((r) => setTimeout(r, 1000));
const sockets = await Promise.all(Array.from({ length: K }, () => new Promise((resolve, reject) => {
  const s = io(`${url}/locations`, { transports: ["websocket"], auth: { token: "good" }, reconnection: false });
  s.once("connect", () => resolve(s));
  s.once("connect_error", reject);
})));
await settle();
const before = rssKiB();
await Promise.all(sockets.map((s) => new Promise((resolve) => {
  let got = 0;
  s.on("tick", () => { got += 1; if (got === N) resolve(); });
  s.emit("burst", { n: N, pad: PAD });
})));
await settle();
const after = rssKiB();
console.log(`${K} websockets, a burst of ${N} frames of ${PAD} B each: RSS ${(before / 1024).toFixed(1)} -> ${(after / 1024).toFixed(1)} MiB, ${((after - before) / K).toFixed(1)} KiB kept per connection`);
for (const s of sockets) s.close();
process.exit(0);
'
