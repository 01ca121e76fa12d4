#!/usr/bin/env bash
# Makes sure HAProxy (Debian's package) is installed, for the load-balancer
# test (tests/interop/test/loadbalancer.test.mjs) and for anyone trying
# deploy/haproxy.cfg locally. Prints the haproxy binary's path on stdout.
# The package's service is never started (see ensure-debian-tool.sh).
#
#   scripts/lb-test-setup.sh
set -euo pipefail
bin=$("$(dirname "$0")/ensure-debian-tool.sh" haproxy haproxy)
# Read all of its output (`| head -n 1` could close the pipe early: SIGPIPE,
# which pipefail turns into a failed step).
version=$("$bin" -v)
echo "${version%%$'\n'*}" >&2
echo "$bin"
