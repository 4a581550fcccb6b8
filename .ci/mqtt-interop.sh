#!/usr/bin/env bash
# MQTT interop (docs/mqtt.md): Debian's mosquitto_pub / mosquitto_sub (3.1.1
# and 5.0), Python paho-mqtt and the `pike` CLI against a live pike-server
# (debug build, a temporary configuration and data dir, kernel-picked
# ports, an uplink webhook run by the test). Every wait is bounded.
#
# Usage: bash .ci/mqtt-interop.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PAHO_VERSION=2.2.0
START_POLLS=240 # × 0.25 s = 60 s
RUN_TIMEOUT_SECS=300
STOP_POLLS=120 # × 0.25 s = 30 s

# --- install ----------------------------------------------------------------
if ! command -v mosquitto_sub >/dev/null || ! command -v mosquitto_pub >/dev/null; then
  echo "installing mosquitto-clients (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-clients >/dev/null
fi
if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
  echo "installing python3 and pip (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null
fi
found=$(python3 -m pip show paho-mqtt 2>/dev/null | sed -n 's/^Version: //p' || true)
if [[ $found != "$PAHO_VERSION" ]]; then
  echo "installing paho-mqtt $PAHO_VERSION (found: ${found:-none})"
  python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
    "paho-mqtt==$PAHO_VERSION"
fi

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

# --- the server -------------------------------------------------------------
cargo build -p pike-server --bins --locked --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
server="$target_dir/debug/pike-server"
webhook_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
app=mqttinterop
api_key=$(python3 -c 'import secrets; print("pk_mqtt_" + secrets.token_hex(16))')
secret=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
cat >"$tmp/pike.toml" <<TOML
data_dir = "$tmp/data"

[listen]
tcp = "127.0.0.1:0"
tls = ""
quic = ""
http = "127.0.0.1:0"

[mqtt]
listen = "127.0.0.1:0"

[[apps]]
id = "$app"
api_key = "$api_key"
token_secret = "$secret"

[[apps.biz]]
id = "iot"
uplink_webhooks = ["http://127.0.0.1:$webhook_port/pike/uplink"]
TOML
"$server" --config "$tmp/pike.toml" >"$tmp/server.log" 2>&1 &
pid=$!
polls=0
until grep -q '^pike-server .* ready$' "$tmp/server.log"; do
  kill -0 "$pid" 2>/dev/null || fail "pike-server exited before it was ready"
  ((polls++ < START_POLLS)) || fail "pike-server not ready within $((START_POLLS / 4)) s"
  sleep 0.25
done
addr() { sed -n "s/^  $1  *\(127\.0\.0\.1:[0-9]*\)\$/\1/p" "$tmp/server.log" | head -n 1; }
tcp=$(addr tcp)
http=$(addr http)
mqtt=$(addr mqtt)
[[ -n $tcp && -n $http && -n $mqtt ]] || fail "missing addresses in the banner"
echo "pike-server (pid $pid) serves mqtt $mqtt, tcp $tcp, http http://$http"

# --- the run ----------------------------------------------------------------
status=0
PYTHONPATH=conformance PYTHONDONTWRITEBYTECODE=1 \
  PIKE_MQTT=$mqtt PIKE_TCP=$tcp PIKE_HTTP=$http PIKE_APP=$app \
  PIKE_API_KEY=$api_key PIKE_SECRET=$secret PIKE_WEBHOOK_PORT=$webhook_port \
  PIKE_CLI="$target_dir/debug/pike" \
  timeout --kill-after=10 "$RUN_TIMEOUT_SECS" python3 conformance/mqtt_interop.py || status=$?
if ((status == 124 || status == 137)); then
  fail "the MQTT interop tests did not finish within $RUN_TIMEOUT_SECS s"
fi

# --- stop -------------------------------------------------------------------
kill -TERM "$pid" 2>/dev/null || true
polls=0
while kill -0 "$pid" 2>/dev/null; do
  ((polls++ < STOP_POLLS)) || fail "pike-server still running $((STOP_POLLS / 4)) s after SIGTERM"
  sleep 0.25
done
server_status=0
wait "$pid" || server_status=$?
pid=
((server_status == 0)) || fail "pike-server exited with status $server_status after SIGTERM"
((status == 0)) || fail "the MQTT interop tests failed (exit status $status)"
echo "MQTT interop passed; pike-server stopped cleanly"
