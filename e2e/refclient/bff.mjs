// A small Node backend-for-frontend on @atproto/oauth-client-node 0.5.3: it signs alice in
// once at start (the reference client's own login, against the local PDS), then forwards
// every `/xrpc/<nsid>` request to her PDS with the session's `fetchHandler` (DPoP, nonce
// and refresh handled by the client), streaming the answer back. The comparison point for
// the gateway's proxy: the same job, the reference client's way. No cookie check (one
// user), so it does less work per call than the gateway.
//
//   ATSESSION_E2E_PDS=/tmp/pds.json node e2e/refclient/bff.mjs <out.json>
//
// Writes {url, pid} to out.json when ready; stops on SIGTERM.

import fs from 'node:fs'
import http from 'node:http'
import { Readable } from 'node:stream'
import { login, loopbackClient, readPeer } from './common.mjs'

const out = process.argv[2]
if (!out) {
  console.error('usage: node bff.mjs <out.json>')
  process.exit(2)
}
const peer = readPeer()
const account = peer.accounts.find((a) => a.handle === 'alice.test') ?? peer.accounts[0]
const client = loopbackClient(peer)
const session = await login(client, account)

const FORWARD = ['accept', 'accept-language', 'content-type', 'atproto-proxy', 'atproto-accept-labelers']
const server = http.createServer(async (req, res) => {
  try {
    if (!req.url.startsWith('/xrpc/')) {
      res.writeHead(404).end()
      return
    }
    const headers = {}
    for (const h of FORWARD) if (req.headers[h]) headers[h] = req.headers[h]
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD'
    const answer = await session.fetchHandler(req.url, {
      method: req.method,
      headers,
      ...(hasBody ? { body: Readable.toWeb(req), duplex: 'half' } : {}),
    })
    const back = {}
    for (const h of ['content-type', 'content-length', 'content-encoding']) {
      const v = answer.headers.get(h)
      if (v) back[h] = v
    }
    res.writeHead(answer.status, back)
    if (answer.body) Readable.fromWeb(answer.body).pipe(res)
    else res.end()
  } catch (e) {
    res.writeHead(502, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ error: 'UpstreamFailure', message: String(e?.message ?? e) }))
  }
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address()
  fs.writeFileSync(out, JSON.stringify({ url: `http://127.0.0.1:${port}`, pid: process.pid }))
})
const stop = () => server.close(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
