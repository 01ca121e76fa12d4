#!/usr/bin/env bash
# Makes sure HAProxy (Debian's package) is installed, for the load-balancer
# test (tests/interop/test/loadbalancer.test.mjs) and for anyone trying
# deploy/haproxy.cfg locally. Prints the haproxy binary's path on stdout.
# The package's service is never started (see ensure-debian-tool.sh).
#
#   scripts/lb-test-setup.sh
set -euo pipefail
bin=$("$(dirname "$0")/ensure-debian-tool.sh" haproxy haproxy)
"$bin" -v | head -n 1 >&2
echo "$bin"
