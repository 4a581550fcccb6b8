#!/usr/bin/env bash
# Crates other teams can adopt (issue 19), run by .ci/run after the tests:
#
# 1. every runnable example builds and runs to completion on loopback (each
#    starts what it talks to on 127.0.0.1 port 0 and exits 0 after checking
#    what it shows);
# 2. the dependency policy: `cargo deny check bans licenses sources` with
#    deny.toml (cargo-deny installed and cached by .ci/cargo-deny.sh);
# 3. publish readiness: `cargo package` of every published crate, in
#    dependency order, each package verified by building it from its
#    .crate contents (unpublished path dependencies resolve through cargo's
#    local overlay of the packages made in the same run).
#
# Alone: `bash .ci/adoption.sh` (after a build; about 10 minutes on 2 cores
# the first time, mostly the package verification).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n=== %s\n' "$*"; }

# crate/example, in layer order.
EXAMPLES=(
  tunnelkit/race_and_limit
  tntunnel/tls_echo
  pike-channel/virtual_clock
  pike-api/chat_client
  pike-server/custom_gateway
  pike-server/embed_http
)

# The published crates, in dependency order (xtask is tooling: not published).
PACKAGES=(faultproxy pike-proto tunnelkit tntunnel pike-channel pike-api pike-jetstream pike-server)

step "examples build and run on loopback"
# Built together, with the workspace's features: the same artifacts as
# `cargo test --workspace`.
cargo build --workspace --examples --locked --quiet
for example in "${EXAMPLES[@]}"; do
  echo "--- cargo run -p ${example%/*} --example ${example#*/}"
  timeout 120 "target/debug/examples/${example#*/}"
done

step "dependency policy: cargo deny check bans licenses sources (deny.toml)"
bash .ci/cargo-deny.sh check

step "packages: cargo package of every published crate, verified"
# Cargo treats a registry package as immutable per version: it unpacks the
# packages it verifies against into $CARGO_HOME/registry/src/-<overlay
# hash>/NAME-VERSION and keeps their builds in target/debug, and reuses both
# while the version stays 0.1.0. A second run on one machine would then
# verify against the first run's sources: drop those copies, and the
# fingerprints of our packages so they are built again (dependencies stay).
for dir in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/; do
  [[ -d $dir ]] || continue
  for package in "${PACKAGES[@]}"; do rm -rf "$dir$package"-[0-9]*; done
done
for package in "${PACKAGES[@]}"; do
  rm -rf target/debug/.fingerprint/"$package"-[0-9a-f]*
done
args=()
for package in "${PACKAGES[@]}"; do args+=(-p "$package"); done
cargo package --locked --quiet "${args[@]}"
ls -l target/package/*.crate
