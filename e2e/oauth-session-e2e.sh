#!/usr/bin/env bash
# The OAuth session layer's end-to-end tests against the official PDS (200 concurrent calls
# with one refresh, four processes with one refresh, sign-out), plus the fake-server fault
# tests and the `atsession call` CLI test. Installs the peer if needed, starts a fresh one,
# runs the tests, stops it. Idempotent; works from a clean checkout.
# PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) are used for the lock variants of
# the multi-process test; under CI=true they must be up.
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
cargo test -p atsession --all-features --test oauth_session_fake --test oauth_session_e2e
if [[ -f crates/atsession-gateway/tests/cli_call.rs ]]; then
  cargo test -p atsession-gateway --test cli_call
fi
