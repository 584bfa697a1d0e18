#!/usr/bin/env bash
# Reference figures from @atproto/oauth-client-node 0.5.3 against the running peer:
# whole login (loopback and confidential client) and restore() throughput.
# Usage: ATSESSION_E2E_PDS=/tmp/pds.json bash e2e/refclient/bench.sh [login-runs=20] [restore-iterations=5000]
# Prints one JSON line per measurement. Needs e2e/pds/setup.sh (it installs this folder too).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${ATSESSION_E2E_PDS:?set ATSESSION_E2E_PDS to the JSON written by e2e/pds/up.sh}"
# shellcheck source=../env.sh
source "$HERE/../env.sh"
cd "$HERE"
node login.mjs "${1:-20}"
node login.mjs "$(( (${1:-20} + 3) / 4 ))" --confidential
node restore.mjs "${2:-5000}"
