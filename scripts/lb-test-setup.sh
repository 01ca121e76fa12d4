#!/usr/bin/env bash
# Makes sure HAProxy (Debian's package) is installed, for the load-balancer
# test (tests/interop/test/loadbalancer.test.mjs) and for anyone trying
# deploy/haproxy.cfg locally. Idempotent: does nothing when haproxy is on
# PATH (or in /usr/sbin). Prints the haproxy binary's path on stdout.
#
#   scripts/lb-test-setup.sh
#
# Needs root (or sudo) only when the package is missing. The Debian package
# also installs a systemd/init service; we never start it (the test runs its
# own haproxy process on free loopback ports), and if the package scripts
# started it, it is stopped again so it does not hold port 80.
set -euo pipefail

find_haproxy() {
  command -v haproxy 2>/dev/null && return 0
  [ -x /usr/sbin/haproxy ] && { echo /usr/sbin/haproxy; return 0; }
  return 1
}

if bin=$(find_haproxy); then
  echo "$bin"
  exit 0
fi

sudo=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
    echo "lb-test-setup: haproxy is missing and we are not root (no sudo): apt-get install haproxy" >&2
    exit 1
  fi
fi

echo "lb-test-setup: installing haproxy (Debian package)" >&2
export DEBIAN_FRONTEND=noninteractive
# A package index that is missing or stale makes apt-get install fail with 404s:
# refresh it, then retry the install once more if a mirror hiccups.
# Do not let the package's maintainer scripts start the system service:
# policy-rc.d exit 101 = "action forbidden" (removed again below).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 755 "$policy"
  own_policy=1
fi
cleanup() { if [ "$own_policy" = 1 ]; then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

ok=0
for attempt in 1 2 3; do
  if "${sudo[@]}" apt-get update -qq >&2 &&
     "${sudo[@]}" apt-get install -y -qq --no-install-recommends haproxy >&2; then
    ok=1; break
  fi
  echo "lb-test-setup: apt-get failed (attempt $attempt), retrying" >&2
  sleep $((attempt * 5))
done
[ "$ok" = 1 ] || { echo "lb-test-setup: could not install haproxy" >&2; exit 1; }

bin=$(find_haproxy) || { echo "lb-test-setup: haproxy installed but not found" >&2; exit 1; }
"$bin" -v | head -n 1 >&2
echo "$bin"
