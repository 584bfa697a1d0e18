#!/usr/bin/env bash
# Installs what the browser tests need: Debian's Chromium (apt-get, when /usr/bin/chromium
# is missing; needs root) and puppeteer-core from this folder's lockfile (on the project's
# Node 22; it downloads no browser). Also GNU time (/usr/bin/time), with which the CLI tests
# measure peak memory. Idempotent.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
say() { echo "[browser setup] $*" >&2; }

missing=()
[[ -x "${ATSESSION_CHROMIUM:-/usr/bin/chromium}" ]] || missing+=(chromium)
[[ -x /usr/bin/time ]] || missing+=(time)
if (( ${#missing[@]} )); then
  say "installing from Debian: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
"${ATSESSION_CHROMIUM:-/usr/bin/chromium}" --version >&2

# shellcheck source=../env.sh
source "$HERE/../env.sh"
stamp="$HERE/node_modules/.atsession-e2e-stamp"
key="$(sha256sum < "$HERE/package-lock.json" | cut -c1-16)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$key" ]]; then
  say "puppeteer-core: up to date"
else
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$key" > "$stamp"
fi
say "ready"
