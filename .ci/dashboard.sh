#!/usr/bin/env bash
# The dashboard (/dashboard/) in headless Chromium against a real
# pike-server (pike-server/dashboard-tests/dashboard.test.mjs: sign-in with
# a wrong and a right key, connection counts per transport, presence, a
# trace, a push from the form, rooms, the rates and SLA charts, no console
# error). Installs Debian's Chromium (.ci/chromium.sh) and the test's npm
# package (playwright-core, no browser download), builds pike-server and
# pike (debug, cached by cargo). Every step is bounded.
#
# Screenshots go to a temporary directory; to refresh the committed ones:
#   PIKE_DASHBOARD_SCREENSHOTS=docs/dashboard bash .ci/dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/.."

chromium=$(timeout 1800 bash .ci/chromium.sh)
timeout 1800 cargo build -p pike-server --bins --locked --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).target_directory))')
if [[ -n ${PIKE_DASHBOARD_SCREENSHOTS:-} ]]; then
  mkdir -p "$PIKE_DASHBOARD_SCREENSHOTS"
  PIKE_DASHBOARD_SCREENSHOTS=$(cd "$PIKE_DASHBOARD_SCREENSHOTS" && pwd)
  export PIKE_DASHBOARD_SCREENSHOTS
fi

cd pike-server/dashboard-tests
[[ -d node_modules/playwright-core ]] || timeout 300 npm ci --no-audit --no-fund --loglevel=error
timeout 300 node dashboard.test.mjs "$target_dir/debug" "$chromium"
