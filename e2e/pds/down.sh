#!/usr/bin/env bash
# Stops the e2e peer started by up.sh. Usage: down.sh [json-out]
# (default: the last one up.sh started). Idempotent.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-${ATSESSION_E2E_PDS:-}}"
if [[ -z "$OUT" && -f "$HERE/.last-json" ]]; then OUT="$(cat "$HERE/.last-json")"; fi
[[ -n "$OUT" ]] || { echo "e2e peer: nothing to stop"; exit 0; }
OUT="$(realpath -m "$OUT")"
PIDFILE="$OUT.pid"
[[ -f "$PIDFILE" ]] || { echo "e2e peer: not running ($PIDFILE absent)"; exit 0; }
PID="$(cat "$PIDFILE")"
# Only signal our own start.mjs (the PID may have been reused).
if kill -0 "$PID" 2>/dev/null && tr '\0' ' ' < "/proc/$PID/cmdline" 2>/dev/null | grep -q 'start\.mjs'; then
  kill -TERM "$PID"
  for _ in $(seq 1 100); do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$PID" 2>/dev/null; then
    echo "e2e peer $PID did not stop on SIGTERM; killing" >&2
    kill -KILL "$PID" 2>/dev/null || true
  fi
  echo "e2e peer $PID stopped"
else
  echo "e2e peer: process $PID is gone"
fi
rm -f "$PIDFILE" "$OUT"
if [[ -f "$HERE/.last-json" && "$(cat "$HERE/.last-json")" == "$OUT" ]]; then
  rm -f "$HERE/.last-json" "$HERE/.last-pid"
fi
