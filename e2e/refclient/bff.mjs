// A small Node backend-for-frontend on @atproto/oauth-client-node 0.5.3, the comparison
// point for the gateway's proxy. It signs alice in once at start (the reference client's own
// login, against the local PDS), then forwards every `/xrpc/<nsid>` request to her PDS with
// an OAuth session's `fetchHandler` (DPoP, nonce and refresh handled by the client),
// streaming the answer back. Two modes:
//
// - `per-request` (the gateway's job, the way the reference example app does it): each
//   request's `sid` cookie is looked up in an app-session table (SHA-256 of the token, as
//   the gateway stores it), and the user's OAuth session is restored with
//   `client.restore(did)` from a session store in SQLite (node:sqlite, WAL), then called.
//   A request without a valid cookie is answered 401.
// - `lean`: one session kept in memory, no cookie and no store: less work per call than the
//   gateway does (a lower bound for any Node BFF).
// - `bare`: no OAuth at all. The same server forwards with plain `fetch` to the PDS (no
//   login, no DPoP, no token): the floor of a Node proxy on this machine, for calls that
//   need no authentication (`com.atproto.server.describeServer`).
//
//   ATSESSION_E2E_PDS=/tmp/pds.json node e2e/refclient/bff.mjs <out.json> [per-request|lean|bare]
//
// Writes {url, pid, cookie} to out.json when ready (cookie: the `sid` cookie of alice's app
// session in per-request mode); stops on SIGTERM.

import crypto from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import { DatabaseSync } from 'node:sqlite'
import { Readable } from 'node:stream'
import { login, loopbackClient, readPeer } from './common.mjs'

const out = process.argv[2]
const mode = process.argv[3] ?? 'per-request'
if (!out || !['per-request', 'lean', 'bare'].includes(mode)) {
  console.error('usage: node bff.mjs <out.json> [per-request|lean|bare]')
  process.exit(2)
}
const peer = readPeer()
const account = peer.accounts.find((a) => a.handle === 'alice.test') ?? peer.accounts[0]

/** The OAuth sessions (NodeSavedSession as JSON, by DID) and app sessions, in SQLite. */
function sqliteStores(file) {
  fs.rmSync(file, { force: true })
  const db = new DatabaseSync(file)
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
    CREATE TABLE oauth_session (key TEXT PRIMARY KEY, session TEXT NOT NULL);
    CREATE TABLE app_session (token_hash BLOB PRIMARY KEY, did TEXT NOT NULL, expires_at INTEGER NOT NULL);`)
  const get = db.prepare('SELECT session FROM oauth_session WHERE key = ?')
  const set = db.prepare('INSERT INTO oauth_session (key, session) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET session = excluded.session')
  const del = db.prepare('DELETE FROM oauth_session WHERE key = ?')
  const sessionStore = {
    async get(key) {
      const row = get.get(key)
      return row ? JSON.parse(row.session) : undefined
    },
    async set(key, value) { set.run(key, JSON.stringify(value)) },
    async del(key) { del.run(key) },
  }
  const insertApp = db.prepare('INSERT INTO app_session (token_hash, did, expires_at) VALUES (?, ?, ?)')
  const findApp = db.prepare('SELECT did, expires_at FROM app_session WHERE token_hash = ?')
  const hash = (token) => crypto.createHash('sha256').update(token).digest()
  const appSessions = {
    create(did) {
      const token = crypto.randomBytes(32).toString('base64url')
      insertApp.run(hash(token), did, Date.now() + 14 * 24 * 3600 * 1000)
      return token
    },
    find(token) {
      const row = findApp.get(hash(token))
      return row && row.expires_at > Date.now() ? row.did : undefined
    },
  }
  return { sessionStore, appSessions }
}

function cookieValue(header, name) {
  if (!header) return undefined
  for (const part of header.split(';')) {
    const i = part.indexOf('=')
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim()
  }
  return undefined
}

let sessionFor
let cookie
if (mode === 'per-request') {
  const { sessionStore, appSessions } = sqliteStores(out.replace(/\.json$/, '') + '.db')
  const client = loopbackClient(peer, { sessionStore })
  const session = await login(client, account)
  cookie = `sid=${appSessions.create(session.did)}`
  sessionFor = async (req) => {
    const token = cookieValue(req.headers.cookie, 'sid')
    const did = token && appSessions.find(token)
    return did ? client.restore(did) : undefined
  }
} else if (mode === 'lean') {
  const client = loopbackClient(peer)
  const session = await login(client, account)
  sessionFor = async () => session
} else {
  const pds = { fetchHandler: (path, init) => fetch(new URL(path, peer.pdsUrl), init) }
  sessionFor = async () => pds
}

const FORWARD = ['accept', 'accept-language', 'content-type', 'atproto-proxy', 'atproto-accept-labelers']
const server = http.createServer(async (req, res) => {
  try {
    if (!req.url.startsWith('/xrpc/')) {
      res.writeHead(404).end()
      return
    }
    const session = await sessionFor(req)
    if (!session) {
      res.writeHead(401, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: 'AuthenticationRequired', message: 'not signed in' }))
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
  fs.writeFileSync(out, JSON.stringify({ url: `http://127.0.0.1:${port}`, pid: process.pid, cookie }))
})
const stop = () => server.close(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
