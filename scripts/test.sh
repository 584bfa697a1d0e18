#!/usr/bin/env bash
# The whole test run: starts the services and peers the tests need, then formatting, lints,
# every test on every backend, the docs and a bounded fuzz run. Exits non-zero on any failure.
#
#   bash scripts/test.sh
#
# Needs: the Rust toolchain, PostgreSQL and Redis installed (started here if down), Node.js
# and npm (the Node peers are installed from the npm registry on first run).
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n=== %s\n' "$*"; }

step "services"
bash scripts/services.sh

step "e2e peers (official atproto PDS on loopback; Node packages from the npm registry)"
bash e2e/iron/setup.sh
bash e2e/pds/setup.sh
bash e2e/browser/setup.sh
run_dir="$(mktemp -d "${TMPDIR:-/tmp}/atsession-test.XXXXXX")"
# Stop each peer by its own JSON: down.sh without a path stops only $ATSESSION_E2E_PDS once
# that is exported, which would leave the second peer running.
cleanup() {
  local out
  for out in "$run_dir/pds.json" "$run_dir/pds-refresh.json"; do
    bash e2e/pds/down.sh "$out" >/dev/null 2>&1 || true
  done
  rm -rf "$run_dir"
}
trap cleanup EXIT
bash e2e/pds/up.sh "$run_dir/pds.json" >/dev/null
export ATSESSION_E2E_PDS="$run_dir/pds.json"
# A second peer for the refresh tests, which change its token lifetime (global to a PDS).
bash e2e/pds/up.sh "$run_dir/pds-refresh.json" >/dev/null
export ATSESSION_E2E_PDS_REFRESH="$run_dir/pds-refresh.json"

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "features (the library with no default features, each feature alone, and all)"
# Without warnings: code used only under some features is left out of the others.
check_clean() {
  local out
  out="$(cargo check -p atsession "$@" 2>&1)" || { printf '%s\n' "$out"; return 1; }
  printf '%s\n' "$out"
  if grep -q 'generated [0-9]* warning' <<<"$out"; then
    echo "cargo check -p atsession $*: warnings" >&2
    return 1
  fi
}
check_clean --no-default-features
for feature in sqlite postgres redis oauth axum; do
  check_clean --no-default-features --features "$feature"
done
check_clean --all-features

step "tests"
# The browser test keeps its screenshots here.
export ATSESSION_SCREENSHOTS="${ATSESSION_SCREENSHOTS:-${CARGO_TARGET_DIR:-target}/browser-screenshots}"
cargo test --workspace --all-features

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

step "fuzz (the Iron seal parser, bounded; skipped without the nightly toolchain)"
bash fuzz/run.sh "${ATSESSION_FUZZ_SECONDS:-60}"
