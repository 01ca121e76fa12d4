#!/usr/bin/env bash
# The operations files, checked with the tools that read them (issue 16):
# - deploy/prometheus/wecare-alerts.yml: `promtool check rules`, and its unit
#   tests wecare-alerts.test.yml (`promtool test rules`);
# - deploy/systemd/wecare-rt.service: `systemd-analyze verify` (any warning
#   fails, an unknown key included) and `systemd-analyze security` (exposure
#   at most 2.5 of 10), against the built binary.
# Installs Debian's prometheus (promtool) and systemd when missing.
#
#   scripts/ops-checks.sh [WECARE_RT_BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/wecare-rt}")
[ -x "$bin" ] || { echo "ops-checks: $bin is not built" >&2; exit 1; }

promtool=$(scripts/ensure-debian-tool.sh promtool prometheus)
analyze=$(scripts/ensure-debian-tool.sh systemd-analyze systemd)

(cd deploy/prometheus && "$promtool" check rules wecare-alerts.yml && "$promtool" test rules wecare-alerts.test.yml)

# The unit as installed, but with the binary of this build, and the settings
# file optional (there is none here).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -e "s#^ExecStart=/usr/local/bin/wecare-rt#ExecStart=$bin#" -e 's#^EnvironmentFile=#EnvironmentFile=-#' \
  deploy/systemd/wecare-rt.service >"$work/wecare-rt.service"
if ! out=$("$analyze" verify --man=no "$work/wecare-rt.service" 2>&1) || [ -n "$out" ]; then
  echo "ops-checks: systemd-analyze verify: ${out:-failed}" >&2
  exit 1
fi
"$analyze" security --offline=yes --threshold=25 "$work/wecare-rt.service" | tail -n 1
echo "ops-checks: alert rules and their tests, the systemd unit: ok"
