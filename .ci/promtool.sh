#!/usr/bin/env bash
# Prometheus conformance of the gateway's /metrics and of the shipped SLA
# rules and dashboard (docs/gateway.md, "Metrics" and "SLA indicators"):
#   1. installs promtool (Debian package `prometheus`), curl and python3 if
#      missing;
#   2. builds pike-server and starts it on a temporary data dir, every
#      listener on a free loopback port;
#   3. `promtool check metrics` on a scrape right after start, then on one
#      after traffic (a login that receives a reliable push, a transient
#      push, an HTTP 404): any output line fails the step;
#   4. `promtool check rules` and `promtool test rules` on
#      docs/pike-sla.rules.yml, and the Grafana dashboard parses as JSON.
# Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# apt cannot pin across Debian releases: the versions in use are printed.
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
promtool --version 2>&1 | head -n 1
curl --version | head -n 1
python3 --version

cargo build -p pike-server --bins --locked --quiet
bin=target/debug

tmp=$(mktemp -d)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/pike.toml" <<EOF
data_dir = "$tmp/data"

[listen]
tcp = "127.0.0.1:0"
tls = "127.0.0.1:0"
quic = "127.0.0.1:0"
http = "127.0.0.1:0"
EOF
"$bin/pike-server" --config "$tmp/pike.toml" >"$tmp/server.log" 2>&1 &
pid=$!

fail() {
  echo "promtool step: $*; the server's output:" >&2
  cat "$tmp/server.log" >&2
  exit 1
}

waited=0
until grep -q '^pike-server .* ready$' "$tmp/server.log"; do
  kill -0 "$pid" 2>/dev/null || fail "pike-server exited before its ready banner"
  ((waited++ < 600)) || fail "no ready banner within 60 s"
  sleep 0.1
done
http=$(awk '$1 == "http" { print $2; exit }' "$tmp/server.log")
tcp=$(awk '$1 == "tcp" { print $2; exit }' "$tmp/server.log")
[[ -n $http && -n $tcp ]] || fail "no http or tcp address in the banner"

# promtool prints one line per problem; an empty output is the only pass.
check_metrics() {
  local what=$1 out status=0
  curl -sS --fail --max-time 10 "http://$http/metrics" >"$tmp/metrics.txt" ||
    fail "GET /metrics failed ($what)"
  out=$(promtool check metrics <"$tmp/metrics.txt" 2>&1) || status=$?
  if ((status != 0)) || [[ -n $out ]]; then
    echo "promtool check metrics ($what): status $status" >&2
    printf '%s\n' "$out" >&2
    exit 1
  fi
  echo "promtool check metrics ($what): no problems," \
    "$(grep -c '^# TYPE ' "$tmp/metrics.txt") families," \
    "$(grep -vc '^#' "$tmp/metrics.txt") lines"
}

check_metrics "right after start"

# Traffic: a device logs in and receives a reliable push; a transient push;
# a request for no route.
timeout 30 "$bin/pike" listen --alias chat:u42 --count 1 --server "$tcp" \
  --data-dir "$tmp/data" >"$tmp/listen.log" 2>&1 &
listener=$!
timeout 30 "$bin/pike" push --alias chat:u42 --api "http://$http" \
  --data-dir "$tmp/data" hello >/dev/null ||
  fail "pike push failed"
wait "$listener" || fail "pike listen did not receive the push: $(cat "$tmp/listen.log")"
grep -q hello "$tmp/listen.log" || fail "pike listen printed no message: $(cat "$tmp/listen.log")"
api_key=$(awk '$1 == "api" && $2 == "key" { print $3; exit }' "$tmp/server.log")
curl -sS --fail --max-time 10 -o /dev/null -H "authorization: Bearer $api_key" \
  -H 'content-type: application/json' \
  -d '{"biz":"chat","alias":"u42","payload":"blink","reliable":false}' \
  "http://$http/v1/push"
curl -sS --max-time 10 -o /dev/null "http://$http/v1/no-such-route"

check_metrics "after a login, pushes and a 404"
grep -q '^pike_logins_total{result="ok"} 1$' "$tmp/metrics.txt" ||
  fail "the login is not counted: $(grep pike_logins_total "$tmp/metrics.txt")"

kill "$pid"
wait "$pid" 2>/dev/null || true
pid=

promtool check rules docs/pike-sla.rules.yml
(cd docs && promtool test rules pike-sla.rules.test.yml)
python3 -m json.tool docs/grafana/pike-sla.json >/dev/null
echo "docs/grafana/pike-sla.json is valid JSON"
