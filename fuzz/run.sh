#!/usr/bin/env bash
# Runs the unseal fuzz target for a bounded time: bash fuzz/run.sh [SECONDS, default 60]
# Needs the nightly toolchain and cargo-fuzz; prints a skip message and succeeds without them.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped (no nightly toolchain: rustup toolchain install nightly)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
mkdir -p corpus/unseal
# Seed: a valid seal and a few near misses.
printf '%s' 'Fe26.2**b7421619981b542c162a262b81d7fae7e10e92c95acc4bac5719fd7fbdec5a65*SwNuxjXlMSW1ejbnSjYABw*Wvs2kUEBWczDYJl6DAFqzcLS5-CHqK66youqfGTZsCQ*1795428859895*25dcde49c008445ad42fa10bf9437227d1c84405e2f68bb63a86c93ca7b50b89*1b0' > corpus/unseal/seed-truncated
printf '%s' 'Fe26.2*1*aa*AAAAAAAAAAAAAAAAAAAAAA*AAAAAAAAAAAAAAAAAAAAAA**bb*AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA~2' > corpus/unseal/seed-shape
cargo +nightly fuzz run unseal corpus/unseal -- -max_total_time="$secs" -max_len=8192 -print_final_stats=1
echo "fuzz: unseal ran ${secs}s without a crash"
