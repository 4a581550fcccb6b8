#!/usr/bin/env bash
# OpenAPI conformance: schemathesis (property-based, from PyPI, pinned) reads
# docs/openapi.yaml and sends generated requests, valid and invalid, to a
# live pike-server (debug build, a temporary data dir, ports picked by the
# kernel, the zero-config dev app's API key), with every check it has. Any
# failure fails the step. Every wait is bounded.
#
# Environment (optional): PIKE_SCHEMATHESIS_EXAMPLES (examples per operation
# and phase, default 100), PIKE_SCHEMATHESIS_SEED (default fixed, so that CI
# is reproducible; set another to explore).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${PIKE_SCHEMATHESIS_EXAMPLES:-100}
SEED=${PIKE_SCHEMATHESIS_SEED:-20260101}
# Bounds: the server's start, the whole run, one request.
START_POLLS=240 # × 0.25 s = 60 s
RUN_TIMEOUT_SECS=900
# The server bounds every request by http.request_timeout_secs (30 s,
# then 503 timeout): that is the response time checked (schemathesis'
# default, 10 s, is less than a 1,000-push batch of reliable pushes takes
# on a debug build, one store commit each), and the client waits longer.
MAX_RESPONSE_TIME_SECS=30
REQUEST_TIMEOUT_SECS=40

# --- install (pinned) -------------------------------------------------------
if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
  echo "installing python3 and pip (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null
fi
# schemathesis 4.32 needs Python 3.11 or later (Debian 12 has 3.11).
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "schemathesis $SCHEMATHESIS_VERSION needs Python >= 3.11; found $(python3 --version 2>&1)" >&2
  exit 1
fi
installed=$(python3 -m pip show schemathesis 2>/dev/null | sed -n 's/^Version: //p' || true)
if [[ $installed != "$SCHEMATHESIS_VERSION" ]]; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION (found: ${installed:-none})"
  python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
    "schemathesis==$SCHEMATHESIS_VERSION"
fi
schemathesis=$(python3 -c 'import shutil, sys, sysconfig, os
path = os.path.join(sysconfig.get_path("scripts"), "schemathesis")
print(path if os.access(path, os.X_OK) else (shutil.which("schemathesis") or ""))')
if [[ -z $schemathesis ]]; then
  echo "schemathesis is installed but its command is not found" >&2
  exit 1
fi
"$schemathesis" --version

# --- the server -------------------------------------------------------------
cargo build -p pike-server --bin pike-server --locked --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
server="$target_dir/debug/pike-server"

tmp=$(mktemp -d)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "$*; the server's output:" >&2
  cat "$tmp/server.log" >&2
  exit 1
}

# Loopback, kernel-picked ports; TLS and QUIC off (not under test here).
cat >"$tmp/pike.toml" <<EOF
data_dir = "$tmp/data"

[listen]
tcp = "127.0.0.1:0"
tls = ""
quic = ""
http = "127.0.0.1:0"
EOF
"$server" --config "$tmp/pike.toml" >"$tmp/server.log" 2>&1 &
pid=$!

polls=0
until grep -q '^pike-server .* ready$' "$tmp/server.log"; do
  kill -0 "$pid" 2>/dev/null || fail "pike-server exited before it was ready"
  ((polls++ < START_POLLS)) || fail "pike-server not ready within $((START_POLLS / 4)) s"
  sleep 0.25
done
http=$(sed -n 's/^  http  *\(127\.0\.0\.1:[0-9]*\)$/\1/p' "$tmp/server.log" | head -n 1)
api_key=$(sed -n 's/^  api key  *\(pk_[A-Za-z0-9_]*\)$/\1/p' "$tmp/server.log" | head -n 1)
[[ -n $http ]] || fail "no http address in the banner"
[[ -n $api_key ]] || fail "no dev app API key in the banner"
echo "pike-server (pid $pid) serves http://$http"

# --- the run ----------------------------------------------------------------
# No cache: no ./.schemathesis in the clone, and no replay of an earlier
# run's failures (the run depends on the seed only).
printf '[cache]\nenabled = false\n' >"$tmp/schemathesis.toml"
# Strings are generated in ASCII: the server's limits count bytes (a biz is
# at most 64 bytes, an alias 256), JSON Schema's maxLength counts
# characters, and only for ASCII are the two the same, so only then is a
# schema-valid value exactly one the server accepts, and a schema-invalid
# one exactly one it refuses. Byte limits on non-ASCII text are covered by
# the Rust tests (pike-server/src/http/validate.rs, tests/http_api.rs).
# The two WebSocket upgrades (`GET /v1/push/ws`, `GET /v1/ws`) are left
# out: a request without the upgrade headers (what the schema lets
# schemathesis send) is answered 400, which it counts as a valid request
# refused, and a real upgrade would hand its HTTP client a WebSocket. Real
# WebSocket clients test them (pike-server/tests/push_socket.rs and
# device_socket.rs, tokio-tungstenite).
status=0
timeout --kill-after=10 "$RUN_TIMEOUT_SECS" \
  "$schemathesis" --config-file "$tmp/schemathesis.toml" run docs/openapi.yaml \
  --url "http://$http" \
  --header "Authorization: Bearer $api_key" \
  --checks all \
  --max-examples "$EXAMPLES" \
  --seed "$SEED" \
  --workers 1 \
  --request-timeout "$REQUEST_TIMEOUT_SECS" \
  --max-response-time "$MAX_RESPONSE_TIME_SECS" \
  --generation-database none \
  --generation-codec ascii \
  --exclude-operation-id pushConnection \
  --exclude-operation-id deviceConnection \
  --no-color || status=$?
if ((status == 124 || status == 137)); then
  fail "schemathesis did not finish within $RUN_TIMEOUT_SECS s"
fi
kill -0 "$pid" 2>/dev/null || fail "pike-server died during the run"
if ((status != 0)); then
  echo "schemathesis found failures (exit status $status); seed $SEED" >&2
  exit "$status"
fi

# --- stop -------------------------------------------------------------------
kill -TERM "$pid"
polls=0
while kill -0 "$pid" 2>/dev/null; do
  ((polls++ < 120)) || fail "pike-server still running 30 s after SIGTERM"
  sleep 0.25
done
server_status=0
wait "$pid" || server_status=$?
pid=
((server_status == 0)) || fail "pike-server exited with status $server_status after SIGTERM"
echo "schemathesis passed; pike-server stopped cleanly"
