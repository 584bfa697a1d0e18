#!/usr/bin/env bash
# Instructions per proxied `com.atproto.server.getSession` of gateway builds, counted by
# valgrind's callgrind: the same count for the same build in every run, whatever else the
# machine does, where CPU time per call moves by a quarter between runs. A change to the
# work of a call shows here in one run; its effect on CPU time still has to be measured
# with the `proxy_cost` bench (instructions on cold caches are not all equally dear).
#
#   bash scripts/proxy-instructions.sh                      # this checkout's release build
#   bash scripts/proxy-instructions.sh /tmp/before /tmp/after
#
# For each binary, the `proxy_cost` bench runs twice with that binary as its baseline
# gateway under callgrind, with 100 and then 300 calls per target; the difference of the
# two counts over the 200 extra calls is the count of one call, free of start-up and
# sign-in. Printed per binary: instructions per call, split into the DPoP proof (the ES256K
# signature) and the rest, and how many of them compress SHA-256 blocks (the proof's
# deterministic nonce, `ath`, the session token's hash): under valgrind SHA-256 runs
# without the CPU's SHA instructions, so that share is far larger than on the machine.
#
# Needs valgrind, python3, Node.js and npm (the PDS peer, installed by e2e/pds/setup.sh).
# Takes about a minute per binary.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "proxy-instructions: valgrind is not installed" >&2; exit 1; }
command -v callgrind_annotate >/dev/null || { echo "proxy-instructions: callgrind_annotate is missing" >&2; exit 1; }

if [ "$#" -eq 0 ]; then
  cargo build --release -p atsession-gateway --bins --quiet
  set -- "$PWD/target/release/atsession"
fi
cargo bench -p atsession-gateway --bench proxy_cost --no-run --quiet

work="$(mktemp -d "${TMPDIR:-/tmp}/atsession-instructions.XXXXXX")"
cleanup() {
  bash e2e/pds/down.sh "$work/pds.json" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
bash e2e/pds/setup.sh >/dev/null
bash e2e/pds/up.sh "$work/pds.json" >/dev/null

for bin in "$@"; do
  bin="$(realpath "$bin")"
  for n in 100 300; do
    out="$work/n$n"
    mkdir -p "$out"
    ATSESSION_PROXY_CALLS=$n ATSESSION_E2E_PDS="$work/pds.json" ATSESSION_PROXY_BASELINE="$bin" \
      ATSESSION_GATEWAY_UNDER="valgrind --tool=callgrind --callgrind-out-file=$out/callgrind.%p" \
      cargo bench -p atsession-gateway --bench proxy_cost --quiet >"$out/bench.log" 2>&1 || {
      echo "proxy-instructions: the bench failed; its output:" >&2
      cat "$out/bench.log" >&2
      exit 1
    }
    # The bench's own gateway runs under callgrind too, and makes twice the calls and the
    # floors' besides: the profile counted is the baseline's (its store is `baseline.db`).
    profile="$(grep -l "^cmd: *$bin .*/baseline\.db " "$out"/callgrind.* | head -n1)"
    [ -n "$profile" ] || { echo "proxy-instructions: no profile of the baseline gateway" >&2; exit 1; }
    callgrind_annotate "$profile" >"$work/self-$n.txt" 2>/dev/null
    callgrind_annotate --inclusive=yes "$profile" >"$work/incl-$n.txt" 2>/dev/null
    rm -rf "$out"
  done
  python3 - "$work" "$bin" <<'PY'
import re, sys

work, binary = sys.argv[1], sys.argv[2]
# Work that depends on the time a run takes, not on its calls: lazy initialization, clocks
# read by timers, the signal driver.
noise = re.compile(r"once_cell::imp|clock_gettime|reap_orphans|signal::Driver")

def counts(path):
    found = {}
    for line in open(path):
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*)$", line)
        if m:
            name = re.sub(r" \[/.*", "", m.group(2))
            found[name] = found.get(name, 0) + int(m.group(1).replace(",", ""))
    return found

def per_call(kind):
    a, b = counts(f"{work}/{kind}-100.txt"), counts(f"{work}/{kind}-300.txt")
    return {k: (b.get(k, 0) - a.get(k, 0)) / 200 for k in set(a) | set(b)}

own = per_call("self")
total = own["PROGRAM TOTALS"] - sum(v for k, v in own.items() if noise.search(k))
proof = sum(v for k, v in per_call("incl").items() if k.endswith("atsession::oauth::wire::dpop::DpopKey::proof"))
sha = sum(v for k, v in own.items() if "sha2::sha256::compress" in k)
if proof <= 0:
    sys.exit(f"{binary}: {total:,.0f} instructions per call; DpopKey::proof not found in the profile")
print(
    f"{binary}: {total:,.0f} instructions per call: the DPoP proof {proof:,.0f}, the rest "
    f"{total - proof:,.0f} (SHA-256 compression, in both: {sha:,.0f})"
)
PY
done
