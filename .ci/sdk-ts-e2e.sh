#!/usr/bin/env bash
# The TypeScript SDK against a real pike-server over WebSocket, in Node with
# `ws` (sdk-ts/e2e/gateway.mjs: login, reliable pushes, uplink through a
# webhook, a room, a credential refresh, a graceful gateway restart with
# exactly-once delivery). Builds pike-server (debug, as .ci/conformance.sh
# does; cached by cargo) unless PIKE_SERVER names a binary, and the SDK.
# Every step is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

server=${PIKE_SERVER:-}
if [[ -z $server ]]; then
  cargo build -p pike-server --bin pike-server --locked --quiet
  target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).target_directory))')
  server="$target_dir/debug/pike-server"
fi

cd sdk-ts
[[ -x node_modules/.bin/tsc ]] || timeout 300 npm ci --no-audit --no-fund --loglevel=error
timeout 300 npm run --silent build
timeout 240 node e2e/gateway.mjs "$server"
