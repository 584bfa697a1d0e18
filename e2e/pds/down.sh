#!/usr/bin/env bash
# Stops e2e peers started by up.sh. Usage: down.sh [json-out]
# With a path: the peer started for it. Without: every peer up.sh started from this
# checkout. Idempotent.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

stop_one() { # OUT
  local out="$1" pidfile="$1.pid" pid
  if [[ ! -f "$pidfile" ]]; then
    echo "e2e peer: not running ($pidfile absent)"
    return
  fi
  pid="$(cat "$pidfile")"
  # Only signal our own start.mjs (the PID may have been reused).
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'start\.mjs'; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "e2e peer $pid did not stop on SIGTERM; killing" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "e2e peer $pid stopped ($out)"
  else
    echo "e2e peer: process $pid is gone ($out)"
  fi
  rm -f "$pidfile" "$out" "$HERE/.run/$pid"
}

OUT="${1:-${ATSESSION_E2E_PDS:-}}"
if [[ -n "$OUT" ]]; then
  stop_one "$(realpath -m "$OUT")"
  exit 0
fi
shopt -s nullglob
entries=("$HERE"/.run/*)
if (( ${#entries[@]} == 0 )); then
  echo "e2e peer: nothing to stop"
  exit 0
fi
for entry in "${entries[@]}"; do
  stop_one "$(cat "$entry")"
  rm -f "$entry"
done
