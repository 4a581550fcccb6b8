#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests if it is missing and
# prints its path. Playwright's own browser download cannot work here (no
# internet but the package registries), so the tests drive this one through
# playwright-core with `executablePath`. Launch it with
#   --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
#   --disable-background-networking --disable-component-update --disable-sync
# and a fresh --user-data-dir (the background-networking flags stop it from
# trying to reach Google's hosts, which this machine's network refuses).
set -euo pipefail

chromium=/usr/bin/chromium
if [[ ! -x $chromium ]]; then
  echo "installing chromium (apt)" >&2
  timeout 600 apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq chromium >/dev/null
fi
"$chromium" --version >&2
echo "$chromium"
