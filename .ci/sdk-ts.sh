#!/usr/bin/env bash
# The TypeScript client SDK (sdk-ts/): installs its locked npm packages
# (`npm ci`; npm keeps its download cache in ~/.npm, so a rerun on the same
# machine reads from it), type-checks and builds it with tsc, and runs its
# unit tests with node's test runner (virtual clock, in-memory WebSocket and
# fake server: no network, no sleeps) plus one test over a real `ws` socket
# on loopback. Every step is bounded.
set -euo pipefail
cd "$(dirname "$0")/../sdk-ts"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing nodejs and npm (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if ((major < 20)); then
  echo "sdk-ts needs Node.js >= 20, found $(node --version)" >&2
  exit 1
fi
echo "node $(node --version), npm $(npm --version)"

timeout 300 npm ci --no-audit --no-fund --loglevel=error
timeout 300 npm run --silent build
timeout 300 npm test
