#!/usr/bin/env bash
# Runs every test of the project: formatting and lints, the Rust unit,
# integration, durability, fault and cluster tests, the interop suite
# (official socket.io-client from npm against the built server binary) on
# the embedded store and again on PostgreSQL, and the web client and Map
# Command page (unit tests, then Chromium via playwright-core).
# Installs what it needs itself (npm packages, Debian's chromium,
# postgresql, haproxy, prometheus' promtool and systemd-analyze) and runs a private PostgreSQL instance for the
# run (tests that stop or kill the database start their own).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

pg_dir=$(mktemp -d /tmp/wecare-test-pg.XXXXXX)
trap 'scripts/pg-instance.sh stop "$pg_dir"' EXIT

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "build (debug binary used by the interop suite, and the Socket.IO layer's echo example)"
cargo build --workspace --bins --quiet
cargo build -p wecare-sio --example echo --quiet

step "operations: alert rules (promtool) and the systemd unit (systemd-analyze)"
./scripts/ops-checks.sh target/debug/wecare-rt

step "PostgreSQL for the tests (private instance)"
pg_url=$(scripts/pg-instance.sh start "$pg_dir")
echo "$pg_url"

# Every suite is bounded: a hung test fails the run instead of holding CI.
step "rust tests"
WECARE_TEST_DATABASE_URL="$pg_url" timeout 1500 cargo test --workspace --quiet

step "HAProxy for the load-balancer test (Debian package)"
./scripts/lb-test-setup.sh >/dev/null

step "interop suite (socket.io-client from npm), embedded store"
(cd tests/interop && npm ci --no-audit --no-fund --loglevel=error && timeout 900 npm test)

step "interop suite again, every node on PostgreSQL"
(cd tests/interop && WECARE_INTEROP_DATABASE_URL="$pg_url" timeout 900 npm test)

step "web: client unit tests + Map Command page in Chromium (playwright-core)"
(cd web && npm ci --no-audit --no-fund --loglevel=error && timeout 900 npm test)
