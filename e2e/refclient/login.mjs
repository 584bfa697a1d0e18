// Times one whole login with @atproto/oauth-client-node 0.5.3 against the local PDS:
// authorize (handle → DID → PDS → metadata → PAR) → the user's four HTTP calls →
// callback (token exchange, sub check). Prints one JSON line.
//
//   ATSESSION_E2E_PDS=/tmp/pds.json node e2e/refclient/login.mjs [runs=20] [--confidential]
//
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
  for (let i = 0; i < runs; i++) {
    const client = await getClient()
    const t0 = now()
    const session = await login(client, account)
    ms.push(now() - t0)
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
  node: process.version,
}))
process.exit(0)
