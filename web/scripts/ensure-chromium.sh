#!/usr/bin/env bash
# Makes sure Debian's Chromium is at /usr/bin/chromium for the browser tests
# (playwright-core drives it; no Playwright browser download), with a Thai
# font: the page speaks Thai, and without one the Thai screenshots would
# show empty boxes. Installs what is missing with apt (needs root or sudo).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
thai_font() {
  if command -v fc-list >/dev/null 2>&1; then
    [ -n "$(fc-list :lang=th 2>/dev/null)" ]
  else
    dpkg -s fonts-thai-tlwg >/dev/null 2>&1
  fi
}
thai_font || missing+=(fonts-thai-tlwg)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing ${missing[*]} with apt-get (browser tests)" >&2
SUDO=""
if [ "$(id -u)" != "0" ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
test -x /usr/bin/chromium
