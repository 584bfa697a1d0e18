// The reference implementation's reading of scope strings, for the differential test
// crates/atsession/tests/scope_reference.rs. Reads one JSON case per line on stdin:
//   {"scopes": ["atproto", "repo:..."], "repo": [[collection, action]...],
//    "rpc": [[lxm, aud]...], "blob": [mime...]}
// and writes one JSON answer per line: the normalised form of each scope (null when the
// reference does not accept it) and the answers of ScopePermissionsTransition to each probe.
import { createInterface } from 'node:readline'
import {
  ScopePermissionsTransition,
  normalizeAtprotoOauthScopeValue,
} from '@atproto/oauth-scopes'

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of rl) {
  if (!line.trim()) continue
  const c = JSON.parse(line)
  const norm = c.scopes.map((s) => {
    try {
      return normalizeAtprotoOauthScopeValue(s)
    } catch {
      return null
    }
  })
  const p = new ScopePermissionsTransition(c.scopes.join(' '))
  const safe = (f) => {
    try {
      return f()
    } catch {
      return null
    }
  }
  process.stdout.write(
    JSON.stringify({
      normalized: norm,
      repo: c.repo.map(([collection, action]) => safe(() => p.allowsRepo({ collection, action }))),
      rpc: c.rpc.map(([lxm, aud]) => safe(() => p.allowsRpc({ lxm, aud }))),
      blob: c.blob.map((mime) => safe(() => p.allowsBlob({ mime }))),
    }) + '\n',
  )
}
