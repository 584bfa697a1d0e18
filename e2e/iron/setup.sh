#!/usr/bin/env bash
# Installs the Node peers of the Iron compatibility tests and benchmarks (e2e/iron/node_modules)
# from the committed lockfile. Idempotent: does nothing when node_modules matches the lockfile.
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null || { echo "e2e/iron/setup.sh: node is not installed" >&2; exit 1; }
if [ -f node_modules/.package-lock.json ] && cmp -s package-lock.json node_modules/.setup-stamp 2>/dev/null; then
  echo "e2e/iron: node_modules up to date"
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json node_modules/.setup-stamp
echo "e2e/iron: installed $(node -p "['@hapi/iron','iron-webcrypto','iron-session','iron-session-9'].map(p => p + '@' + require('./node_modules/' + p + '/package.json').version).join(' ')")"
