#!/usr/bin/env bash
# Runs the server the way the README describes: builds the Map Command page
# (web/ → web/dist) and then the release server from the repo root, so that
# WEB_DIR's default `web/dist` resolves. Extra arguments go to `serve`
# (e.g. ./scripts/run.sh --port 3000). Needs cargo, node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build)
exec cargo run --release --bin wecare-rt -- serve "$@"
