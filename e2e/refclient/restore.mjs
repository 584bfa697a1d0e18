// Times @atproto/oauth-client-node 0.5.3's `client.restore(sub)` on a fresh session
// (the common path of the session getter: read the store, no refresh), after one
// real login against the local PDS. Prints one JSON line.
//
//   ATSESSION_E2E_PDS=/tmp/pds.json node e2e/refclient/restore.mjs [iterations=5000]
//
// Sequential calls on one core; the session store is an in-memory Map (the store the
// client's own tests use), so this measures the client, not a database.

import { login, loopbackClient, memoryStore, now, readPeer } from './common.mjs'

const iterations = Number(process.argv[2] ?? 5000)
const peer = readPeer()
const account = peer.accounts.find((a) => a.handle === 'alice.test') ?? peer.accounts[0]
const sessionStore = memoryStore()
let fetches = 0
const countingFetch = (...args) => { fetches++; return globalThis.fetch(...args) }
const client = loopbackClient(peer, { sessionStore, fetch: countingFetch })
await login(client, account)

const stored = sessionStore.map.get(account.did)
const expiresAt = Date.parse(stored?.tokenSet?.expires_at ?? '')
if (!(expiresAt - Date.now() > 120_000)) {
  throw new Error('the access token expires within 2 minutes: start the peer without ATSESSION_E2E_TOKEN_MAX_AGE_MS')
}
const refreshToken = stored.tokenSet.refresh_token

async function run(n) {
  for (let i = 0; i < n; i++) {
    const session = await client.restore(account.did)
    if (session.did !== account.did) throw new Error('wrong session')
  }
}

await run(Math.min(500, iterations)) // warm-up (JIT, caches)
const before = fetches
const t0 = now()
await run(iterations)
const seconds = (now() - t0) / 1000
const requests = fetches - before
if (before === 0) throw new Error('the counting fetch was not used by the client')

if (sessionStore.map.get(account.did).tokenSet.refresh_token !== refreshToken) {
  throw new Error('a refresh happened during the measurement')
}
console.log(JSON.stringify({
  client: '@atproto/oauth-client-node@0.5.3',
  op: 'restore(sub) on a fresh session, memory store',
  iterations,
  http_requests_during_measurement: requests,
  ops_per_sec: Math.round(iterations / seconds),
  us_per_op: Math.round((seconds * 1e6) / iterations * 10) / 10,
  node: process.version,
}))
process.exit(0)
