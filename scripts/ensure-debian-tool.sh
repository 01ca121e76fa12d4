#!/usr/bin/env bash
# Makes sure a program from a Debian package is installed, for the tests that
# use it. Idempotent: does nothing when PROGRAM is on PATH (or in /usr/sbin).
# Prints the program's path on stdout.
#
#   scripts/ensure-debian-tool.sh PROGRAM PACKAGE
#
# Needs root (or sudo) only when the package is missing. A package that also
# installs a system service (haproxy, prometheus) never gets to start it: the
# maintainer scripts are told "action forbidden" (policy-rc.d), so nothing
# holds a port the tests want.
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 PROGRAM PACKAGE" >&2; exit 2; }
program=$1
package=$2

find_program() {
  command -v "$program" 2>/dev/null && return 0
  [ -x "/usr/sbin/$program" ] && { echo "/usr/sbin/$program"; return 0; }
  return 1
}

if bin=$(find_program); then
  echo "$bin"
  exit 0
fi

sudo=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
    echo "ensure-debian-tool: $program is missing and we are not root (no sudo): apt-get install $package" >&2
    exit 1
  fi
fi

echo "ensure-debian-tool: installing $package (Debian package) for $program" >&2
export DEBIAN_FRONTEND=noninteractive
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

# A package index that is missing or stale makes apt-get install fail with
# 404s: refresh it, then retry the install once more if a mirror hiccups.
ok=0
for attempt in 1 2 3; do
  if "${sudo[@]}" apt-get update -qq >&2 &&
     "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$package" >&2; then
    ok=1; break
  fi
  echo "ensure-debian-tool: apt-get failed (attempt $attempt), retrying" >&2
  sleep $((attempt * 5))
done
[ "$ok" = 1 ] || { echo "ensure-debian-tool: could not install $package" >&2; exit 1; }

bin=$(find_program) || { echo "ensure-debian-tool: $package installed but $program not found" >&2; exit 1; }
echo "$bin"
