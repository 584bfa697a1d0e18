#!/usr/bin/env bash
# Starts the e2e peer (PDS + PLC on 127.0.0.1) in the background and waits until it is
# ready. Usage: up.sh <json-out>   (default: $ATSESSION_E2E_PDS)
# Prints the PID on stdout. Log: <json-out>.log; PID file: <json-out>.pid.
# Then: ATSESSION_E2E_PDS=<json-out> cargo test ...; down.sh [<json-out>] stops it (all peers without an argument).
# Env: ATSESSION_E2E_START_TIMEOUT (seconds, default 90), and those read by start.mjs
# (ATSESSION_E2E_TOKEN_MAX_AGE_MS, ATSESSION_E2E_PDS_PORT, ATSESSION_E2E_PLC_PORT, ATSESSION_E2E_LOG).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-${ATSESSION_E2E_PDS:-}}"
[[ -n "$OUT" ]] || { echo "usage: $0 <json-out>" >&2; exit 2; }
OUT="$(realpath -m "$OUT")"
TIMEOUT="${ATSESSION_E2E_START_TIMEOUT:-90}"

# shellcheck source=../env.sh
source "$HERE/../env.sh"
if ! node --version 2>/dev/null | grep -q '^v22\.' || [[ ! -d "$HERE/node_modules/@atproto/pds" ]]; then
  echo "e2e peer not installed: run 'bash e2e/pds/setup.sh' first" >&2
  exit 1
fi

# A peer already started for this file is stopped first: every run starts fresh.
"$HERE/down.sh" "$OUT" >/dev/null 2>&1 || true
rm -f "$OUT"
mkdir -p "$(dirname "$OUT")"

cd "$HERE"
setsid node start.mjs "$OUT" >"$OUT.log" 2>&1 < /dev/null &
PID=$!
echo "$PID" > "$OUT.pid"
mkdir -p "$HERE/.run"
echo "$OUT" > "$HERE/.run/$PID"

deadline=$((SECONDS + TIMEOUT))
while [[ ! -s "$OUT" ]]; do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "e2e peer exited during start-up; log $OUT.log:" >&2
    cat "$OUT.log" >&2
    rm -f "$OUT.pid" "$HERE/.run/$PID"
    exit 1
  fi
  if (( SECONDS >= deadline )); then
    echo "e2e peer not ready after ${TIMEOUT} s; log $OUT.log:" >&2
    cat "$OUT.log" >&2
    kill -TERM "$PID" 2>/dev/null || true
    rm -f "$OUT.pid" "$HERE/.run/$PID"
    exit 1
  fi
  sleep 0.2
done
echo "$(tail -n 1 "$OUT.log")" >&2
echo "$PID"
