#!/usr/bin/env bash
# Wire conformance: a Python Pike client written from docs/ and proto/proto
# alone (conformance/) runs its tests against a live pike-server (debug
# build, a temporary configuration and data dir, kernel-picked ports). The
# tests' last one sends the server SIGTERM (go-away); the server must then
# exit with status 0. Every wait is bounded.
#
# Usage: bash .ci/conformance.sh [TEST NAME FILTER...]
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOBUF_VERSION=7.36.2
GRPCIO_VERSION=1.85.3
GRPCIO_TOOLS_VERSION=1.85.1
# Bounds: the server's start, the whole test run, the server's stop.
START_POLLS=240 # × 0.25 s = 60 s
RUN_TIMEOUT_SECS=300
STOP_POLLS=120 # × 0.25 s = 30 s (the gateway waits up to 15 s for clients)

# --- install (pinned) -------------------------------------------------------
if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
  echo "installing python3 and pip (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null
fi
installed() { python3 -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p' || true; }
for pin in "protobuf $PROTOBUF_VERSION" "grpcio $GRPCIO_VERSION" "grpcio-tools $GRPCIO_TOOLS_VERSION"; do
  read -r name version <<<"$pin"
  found=$(installed "$name")
  if [[ $found != "$version" ]]; then
    echo "installing $name $version (found: ${found:-none})"
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
      "$name==$version"
  fi
done

tmp=$(mktemp -d)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "$*; the server's output:" >&2
  cat "$tmp/server.log" >&2 || true
  exit 1
}

# --- generated protobuf classes (not committed) -----------------------------
mkdir -p "$tmp/gen"
python3 -m grpc_tools.protoc -Iproto/proto --python_out="$tmp/gen" \
  proto/proto/pike/tunnel/v1/tunnel.proto proto/proto/pike/channel/v1/channel.proto

# --- the server -------------------------------------------------------------
cargo build -p pike-server --bin pike-server --locked --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
server="$target_dir/debug/pike-server"

# The test backend (the uplink webhook) listens on a port picked here, so
# that the configuration can name it; the tests bind it right after.
webhook_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
app=conformance
biz=chat
quiet_biz=quiet
api_key=$(python3 -c 'import secrets; print("pk_conf_" + secrets.token_hex(16))')
secret=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
heartbeat_secs=1
login_timeout_secs=3
uplink_window=8

# Loopback, kernel-picked ports; QUIC off (the client speaks plain TCP and
# TLS; the TLS certificate is the one generated into the data dir). Short heartbeat and login deadlines so the keep-alive tests finish
# in seconds; rooms named push:* and pull:* have a fixed mode, others auto.
cat >"$tmp/pike.toml" <<EOF
data_dir = "$tmp/data"

[listen]
tcp = "127.0.0.1:0"
tls = "127.0.0.1:0"
quic = ""
http = "127.0.0.1:0"

[heartbeat]
interval_secs = $heartbeat_secs
timeout_secs = $heartbeat_secs

[limits]
login_timeout_secs = $login_timeout_secs
uplink_window = $uplink_window

[[rooms.rules]]
app = "$app"
name = "push:*"
settings = { mode = "push" }

[[rooms.rules]]
app = "$app"
name = "pull:*"
settings = { mode = "pull" }

[[apps]]
id = "$app"
api_key = "$api_key"
token_secret = "$secret"

[[apps.biz]]
id = "$biz"
uplink_webhooks = ["http://127.0.0.1:$webhook_port/pike/uplink"]

[[apps.biz]]
id = "$quiet_biz"
EOF
"$server" --config "$tmp/pike.toml" >"$tmp/server.log" 2>&1 &
pid=$!

polls=0
until grep -q '^pike-server .* ready$' "$tmp/server.log"; do
  kill -0 "$pid" 2>/dev/null || fail "pike-server exited before it was ready"
  ((polls++ < START_POLLS)) || fail "pike-server not ready within $((START_POLLS / 4)) s"
  sleep 0.25
done
tcp=$(sed -n 's/^  tcp  *\(127\.0\.0\.1:[0-9]*\)$/\1/p' "$tmp/server.log" | head -n 1)
http=$(sed -n 's/^  http  *\(127\.0\.0\.1:[0-9]*\)$/\1/p' "$tmp/server.log" | head -n 1)
tls=$(sed -n 's/^  tls  *\(127\.0\.0\.1:[0-9]*\)$/\1/p' "$tmp/server.log" | head -n 1)
[[ -n $tcp ]] || fail "no tcp address in the banner"
[[ -n $tls ]] || fail "no tls address in the banner"
[[ -n $http ]] || fail "no http address in the banner"
echo "pike-server (pid $pid) serves tcp $tcp, tls $tls, http http://$http"

# --- the run ----------------------------------------------------------------
status=0
started=$SECONDS
PYTHONPATH="$tmp/gen:conformance" PYTHONDONTWRITEBYTECODE=1 \
  PIKE_CONF_TCP=$tcp PIKE_CONF_TLS=$tls PIKE_CONF_TLS_CA="$tmp/data/tls/cert.pem" \
  PIKE_CONF_HTTP=$http PIKE_CONF_APP=$app PIKE_CONF_BIZ=$biz \
  PIKE_CONF_QUIET_BIZ=$quiet_biz \
  PIKE_CONF_API_KEY=$api_key PIKE_CONF_SECRET=$secret \
  PIKE_CONF_WEBHOOK_PORT=$webhook_port PIKE_CONF_HEARTBEAT_SECS=$heartbeat_secs \
  PIKE_CONF_LOGIN_TIMEOUT_SECS=$login_timeout_secs PIKE_CONF_UPLINK_WINDOW=$uplink_window \
  PIKE_CONF_SERVER_PID=$pid PIKE_CONF_SIGTERM_MARKER="$tmp/sigterm-sent" \
  timeout --kill-after=10 "$RUN_TIMEOUT_SECS" \
  python3 conformance/test_conformance.py "$@" || status=$?
echo "the tests took $((SECONDS - started)) s"
if ((status == 124 || status == 137)); then
  fail "the conformance tests did not finish within $RUN_TIMEOUT_SECS s"
fi

# --- stop -------------------------------------------------------------------
# The go-away test sent SIGTERM and left a marker; a run that did not get
# there (a filter, a failure before it) gets it here.
if [[ ! -e $tmp/sigterm-sent ]]; then
  kill -TERM "$pid" 2>/dev/null || true
fi
polls=0
while kill -0 "$pid" 2>/dev/null; do
  ((polls++ < STOP_POLLS)) || fail "pike-server still running $((STOP_POLLS / 4)) s after SIGTERM"
  sleep 0.25
done
server_status=0
wait "$pid" || server_status=$?
pid=
((server_status == 0)) || fail "pike-server exited with status $server_status after SIGTERM"
if ((status != 0)); then
  echo "the conformance tests failed (exit status $status); the server's output:" >&2
  cat "$tmp/server.log" >&2
  exit "$status"
fi
echo "wire conformance passed; pike-server stopped cleanly"
