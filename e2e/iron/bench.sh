#!/usr/bin/env bash
# Unseal speed, Rust against Node, on the same ~500-byte seal (made by @hapi/iron).
#
#   bash e2e/iron/bench.sh [seconds per Node library, default 5]
#
# Runs the criterion bench crates/atsession/benches/seal.rs (release, one thread) on that seal,
# then e2e/iron/bench.mjs (iron-webcrypto, @hapi/iron), and prints unseals per second and ratios.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
secs="${1:-5}"
bash e2e/iron/setup.sh >/dev/null

seal="$(cd e2e/iron && node --input-type=module -e '
import Iron from "@hapi/iron";
const data = { did: "did:plc:ewvi7nxzyoun6zhxrhs64oiz", handle: "alice.bsky.social",
  grant: "0f6b3c1e-9a4d-4f7e-8b2a-5c6d7e8f9a0b", createdAt: 1795425259886,
  scope: "atproto transition:generic", roles: ["user", "beta"], theme: "dark" };
console.log(await Iron.seal(data, "some_not_random_password_that_is_at_least_32_characters", Iron.defaults));
')"
echo "seal: ${#seal} bytes, made by @hapi/iron"

ATSESSION_BENCH_SEAL="$seal" cargo bench -q -p atsession --bench seal -- --noplot 'seal/' 2>&1 \
  | grep -E '^seal/|time:|thrpt:' || true
target="${CARGO_TARGET_DIR:-$root/target}"
est() { node -e 'const e = require(process.argv[1]); console.log(Math.round(1e9 / e.mean.point_estimate))' "$target/criterion/seal/$1/new/estimates.json"; }
rust_unseal="$(est unseal_500B)"
rust_unseal_bytes="$(est unseal_500B_bytes)"
rust_seal="$(est seal_500B)"

node_out="$(cd e2e/iron && node bench.mjs "$seal" "$secs")"
webcrypto="$(echo "$node_out" | awk '$1 == "iron-webcrypto" { print $2 }')"
hapi="$(echo "$node_out" | awk '$1 == "@hapi/iron" { print $2 }')"

echo
echo "unseals per second (one core):"
printf '  %-34s %10s\n' "Rust atsession (typed struct)" "$rust_unseal" \
  "Rust atsession (bytes, no JSON)" "$rust_unseal_bytes" \
  "Node iron-webcrypto" "$webcrypto" "Node @hapi/iron" "$hapi"
printf '  %-34s %10s\n' "Rust atsession seal" "$rust_seal"
node -e 'const [r, w, h] = process.argv.slice(1).map(Number);
console.log(`ratio: Rust/iron-webcrypto = ${(r / w).toFixed(1)}x, Rust/@hapi/iron = ${(r / h).toFixed(1)}x`);' \
  "$rust_unseal" "$webcrypto" "$hapi"
