#!/usr/bin/env bash
# The OAuth client's end-to-end tests against the official PDS: installs the peer if
# needed, starts a fresh one, runs the tests, stops it. Idempotent; works from a clean
# checkout. Usage: bash e2e/oauth-e2e.sh [--timing [runs]]
#   --timing  also prints the login timing of atsession and of @atproto/oauth-client-node
#             against the same peer (one JSON line each).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash e2e/pds/setup.sh
WORK="$(mktemp -d)"
JSON="$WORK/pds.json"
cleanup() { bash e2e/pds/down.sh "$JSON" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
bash e2e/pds/up.sh "$JSON" >/dev/null
export ATSESSION_E2E_PDS="$JSON"
cargo test -p atsession --features oauth --test oauth_e2e
cargo test -p atsession-gateway --test cli_login
if [[ "${1:-}" == "--timing" ]]; then
  RUNS="${2:-20}"
  cargo run --release -q -p atsession --features oauth --example login_timing -- "$RUNS"
  cargo run --release -q -p atsession --features oauth --example login_timing -- "$RUNS" --confidential
  # shellcheck source=env.sh
  (source e2e/env.sh && cd e2e/refclient && node login.mjs "$RUNS" && node login.mjs "$RUNS" --confidential)
fi
