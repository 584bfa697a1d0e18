// Times one whole login with @atproto/oauth-client-node 0.5.3 against the local PDS:
// authorize (handle → DID → PDS → metadata → PAR) → the user's four HTTP calls →
// callback (token exchange, sub check). Prints one JSON line.
//
//   ATSESSION_E2E_PDS=/tmp/pds.json node e2e/refclient/login.mjs [runs=20] [--confidential]
//
// The user's step is mostly the PDS's deliberate constant-time sign-in (>= 400 ms, a
// timing-attack defence), so the phases are reported too: the client's own work is
// authorize + callback.
// "cold": a new client per login (no cached identity or metadata);
// "warm": one client for every login (its caches filled by a first, untimed login).

import { confidentialClient, login, loopbackClient, median, now, readPeer } from './common.mjs'

const args = process.argv.slice(2)
const runs = Number(args.find((a) => /^\d+$/.test(a)) ?? 20)
const confidential = args.includes('--confidential')
const peer = readPeer()
const account = peer.accounts.find((a) => a.handle === 'alice.test') ?? peer.accounts[0]
const makeClient = confidential ? () => confidentialClient(peer) : async () => loopbackClient(peer)

async function timeRuns(getClient) {
  const ms = []
  ms.phases = { authorize: [], user_step: [], callback: [] }
  for (let i = 0; i < runs; i++) {
    const client = await getClient()
    const phases = {}
    const t0 = now()
    const session = await login(client, account, phases)
    ms.push(now() - t0)
    for (const k of Object.keys(ms.phases)) ms.phases[k].push(phases[k])
    if (session.sub !== account.did) throw new Error(`sub ${session.sub} != ${account.did}`)
    if (session.serverMetadata.issuer !== peer.issuer) throw new Error('issuer mismatch')
  }
  return ms
}

const cold = await timeRuns(makeClient)
const shared = await makeClient()
await login(shared, account) // fills the caches
const warm = await timeRuns(async () => shared)

// Proof that the session works: an authenticated call to the PDS.
const session = await shared.restore(account.did)
const res = await session.fetchHandler('/xrpc/com.atproto.server.getSession')
const body = await res.json()
if (res.status !== 200 || body.did !== account.did) {
  throw new Error(`getSession: HTTP ${res.status} ${JSON.stringify(body)}`)
}

const round = (x) => Math.round(x * 10) / 10
console.log(JSON.stringify({
  client: '@atproto/oauth-client-node@0.5.3',
  kind: confidential ? 'confidential (private_key_jwt)' : 'loopback (public)',
  runs,
  cold_median_ms: round(median(cold)),
  cold_min_ms: round(Math.min(...cold)),
  warm_median_ms: round(median(warm)),
  warm_min_ms: round(Math.min(...warm)),
  // The user's step includes the provider's deliberate constant-time sign-in (>= 400 ms);
  // the client's own work is authorize + callback.
  cold_phases_median_ms: Object.fromEntries(Object.entries(cold.phases).map(([k, v]) => [k, round(median(v))])),
  warm_phases_median_ms: Object.fromEntries(Object.entries(warm.phases).map(([k, v]) => [k, round(median(v))])),
  node: process.version,
}))
process.exit(0)
