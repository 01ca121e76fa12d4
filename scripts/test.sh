#!/usr/bin/env bash
# Runs every test of the project: formatting and lints, the Rust unit,
# integration, durability and fault tests, the interop suite (official
# socket.io-client from npm against the built server binary), and the web
# client and Map Command page (unit tests, then Chromium via playwright-core).
# Installs what it needs itself (npm packages, Debian's chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "build (debug binary used by the interop suite)"
cargo build --workspace --bins --quiet

# Every suite is bounded: a hung test fails the run instead of holding CI.
step "rust tests"
timeout 1200 cargo test --workspace --quiet

step "interop suite (socket.io-client from npm)"
(cd tests/interop && npm ci --no-audit --no-fund --loglevel=error && timeout 600 npm test)

step "web: client unit tests + Map Command page in Chromium (playwright-core)"
(cd web && npm ci --no-audit --no-fund --loglevel=error && timeout 900 npm test)
