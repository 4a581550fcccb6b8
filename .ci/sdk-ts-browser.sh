#!/usr/bin/env bash
# The TypeScript SDK in a real Chromium against a real pike-server
# (sdk-ts/e2e-browser/run.mjs: a test page using the SDK with the browser's
# WebSocket logs in through faultproxy, receives reliable pushes exactly once
# across a network cut and a gateway restart, sends uplink to a webhook,
# joins a room; a page of an origin the app does not list is refused).
# Installs Debian's Chromium if missing (.ci/chromium.sh) and drives it with
# playwright-core (an npm devDependency; no browser download). Builds
# pike-server and faultproxy (debug, as .ci/sdk-ts-e2e.sh does; cached by
# cargo) unless PIKE_SERVER and FAULTPROXY name binaries, and the SDK.
# Every step is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium=$(bash .ci/chromium.sh)

server=${PIKE_SERVER:-}
proxy=${FAULTPROXY:-}
if [[ -z $server || -z $proxy ]]; then
  cargo build -p pike-server --bin pike-server -p faultproxy --bin faultproxy --locked --quiet
  target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).target_directory))')
  server=${server:-"$target_dir/debug/pike-server"}
  proxy=${proxy:-"$target_dir/debug/faultproxy"}
fi

cd sdk-ts
[[ -d node_modules/playwright-core && -x node_modules/.bin/tsc ]] ||
  timeout 300 npm ci --no-audit --no-fund --loglevel=error
timeout 300 npm run --silent build
timeout 300 node e2e-browser/run.mjs "$server" "$proxy" "$chromium"
