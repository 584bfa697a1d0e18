// The end-to-end test peer: the official atproto PDS (@atproto/pds) with an
// in-memory PLC directory (@did-plc/server), both on 127.0.0.1 only.
//
//   node start.mjs [OUT.json]        (Node >= 22; see up.sh)
//
// When everything is up it writes OUT.json (argv[2], else $ATSESSION_E2E_PDS, else
// ./pds.json) atomically:
//   { plcUrl, pdsUrl, issuer, accounts: [{handle, did, password, email}],
//     admin: { url, token }, tokenMaxAgeMs, pid, startedAt }
// and stops cleanly on SIGTERM / SIGINT (removing OUT.json).
//
// Environment (all optional):
//   ATSESSION_E2E_PDS_PORT / ATSESSION_E2E_PLC_PORT  fixed ports (default: free ones)
//   ATSESSION_E2E_TOKEN_MAX_AGE_MS  access token lifetime (default: the PDS's 60 min)
//   ATSESSION_E2E_LOG=1             log requests to stderr
//
// Admin endpoint (loopback, `Authorization: Bearer <admin.token>`):
//   POST /clients        {client_id, metadata} or {client_id, metadata_url}
//        registers a confidential (https) client id. When the provider asks for the
//        metadata of that client id, it gets `metadata` (or what `metadata_url`, a
//        loopback URL, serves at that moment) instead of fetching the https URL; the
//        provider's own schema parsing and validateClientMetadata still run on it.
//   DELETE /clients      {client_id}  forgets it.
//   POST /token-max-age  {ms}  sets the access token lifetime; answers {previous}.
//        Global to the PDS: only for a test that owns the peer.
//   GET /health          {ok: true}

import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

const LOOPBACK = '127.0.0.1'

// Both servers call `listen(port)`, which binds every interface: bind loopback only.
const originalListen = net.Server.prototype.listen
net.Server.prototype.listen = function listenOnLoopback(...args) {
  const first = args[0]
  if (first == null || typeof first === 'function') {
    args.splice(0, first == null ? 1 : 0, 0, LOOPBACK)
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, LOOPBACK)
  } else if (typeof first === 'object' && first.path == null && first.host == null) {
    args[0] = { ...first, host: LOOPBACK }
  }
  return originalListen.apply(this, args)
}

const startedAt = Date.now()
const outPath = path.resolve(process.argv[2] ?? process.env.ATSESSION_E2E_PDS ?? 'pds.json')
const log = process.env.ATSESSION_E2E_LOG === '1'
  ? (...a) => console.error('[e2e-pds]', ...a)
  : () => {}

const [major] = process.versions.node.split('.').map(Number)
if (major < 22) {
  console.error(`start.mjs needs Node >= 22 (this is ${process.version}); run it through up.sh`)
  process.exit(2)
}

const { PDS } = await import('@atproto/pds')
const { PlcServer, Database: PlcDatabase } = await import('@did-plc/server')
const { oauthClientMetadataSchema } = await import('@atproto/oauth-types')

async function freePort() {
  const srv = net.createServer()
  await new Promise((resolve, reject) => {
    srv.once('error', reject)
    srv.listen(0, LOOPBACK, resolve)
  })
  const { port } = srv.address()
  await new Promise((resolve) => srv.close(resolve))
  return port
}

function envPort(name) {
  const v = process.env[name]
  if (v == null || v === '') return null
  const n = Number(v)
  if (!Number.isInteger(n) || n <= 0 || n > 65535) throw new Error(`${name}=${v} is not a port`)
  return n
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atsession-e2e-pds-'))
let plc
let pds
let admin
let stopping = false

async function stop(code = 0) {
  if (stopping) return
  stopping = true
  log('stopping')
  try { fs.rmSync(outPath, { force: true }) } catch {}
  await Promise.allSettled([
    admin ? new Promise((r) => { admin.closeAllConnections?.(); admin.close(r) }) : null,
    pds?.destroy(),
  ])
  await Promise.allSettled([plc?.destroy()])
  try { fs.rmSync(tmp, { recursive: true, force: true }) } catch {}
  process.exit(code)
}
process.on('SIGTERM', () => stop(0))
process.on('SIGINT', () => stop(0))

try {
  // PLC directory, in memory.
  const plcPort = envPort('ATSESSION_E2E_PLC_PORT') ?? (await freePort())
  plc = PlcServer.create({ db: PlcDatabase.mock(), port: plcPort })
  await plc.start()
  const plcUrl = `http://localhost:${plcPort}`
  log('plc', plcUrl)

  // PDS. The OAuth issuer is http://localhost:<port> (hostname 'localhost').
  const pdsPort = envPort('ATSESSION_E2E_PDS_PORT') ?? (await freePort())
  const dataDirectory = path.join(tmp, 'data')
  const blobstoreDiskLocation = path.join(tmp, 'blobs')
  fs.mkdirSync(dataDirectory)
  fs.mkdirSync(blobstoreDiskLocation)
  pds = await PDS.fromEnv({
    devMode: true,
    hostname: 'localhost',
    port: pdsPort,
    dataDirectory,
    blobstoreDiskLocation,
    didPlcUrl: plcUrl,
    serviceHandleDomains: ['.test'],
    inviteRequired: false,
    jwtSecret: randomBytes(32).toString('hex'),
    adminPassword: randomBytes(16).toString('hex'),
    plcRotationKeyK256PrivateKeyHex: randomBytes(32).toString('hex'),
    // Room for the 50 MB uploads of the streaming tests (the PDS's default is 5 MB).
    blobUploadLimit: 100 * 1024 * 1024,
  })
  await pds.start()
  const pdsUrl = `http://localhost:${pdsPort}`
  const issuer = pds.ctx.cfg.oauth?.issuer ?? pdsUrl
  log('pds', pdsUrl, 'issuer', issuer)

  const provider = pds.ctx.oauthProvider
  if (!provider) throw new Error('the PDS has no OAuth provider (pds.ctx.oauthProvider)')

  // Short-lived access tokens for refresh tests.
  const tokenManager = provider.tokenManager
  if (!tokenManager || typeof tokenManager.tokenMaxAge !== 'number') {
    throw new Error('pds.ctx.oauthProvider.tokenManager.tokenMaxAge not found in this @atproto/pds')
  }
  const maxAgeEnv = process.env.ATSESSION_E2E_TOKEN_MAX_AGE_MS
  if (maxAgeEnv != null && maxAgeEnv !== '') {
    const ms = Number(maxAgeEnv)
    if (!Number.isFinite(ms) || ms <= 0) throw new Error(`ATSESSION_E2E_TOKEN_MAX_AGE_MS=${maxAgeEnv}`)
    tokenManager.tokenMaxAge = ms
  }

  // Confidential clients: https client ids registered through the admin endpoint
  // are served from here instead of being fetched over the internet.
  const clientManager = provider.clientManager
  if (!clientManager || typeof clientManager.getDiscoverableClientMetadata !== 'function') {
    throw new Error('clientManager.getDiscoverableClientMetadata not found in this @atproto/pds')
  }
  const registeredClients = new Map() // client_id -> { metadata } | { metadataUrl }
  const originalGetDiscoverable = clientManager.getDiscoverableClientMetadata.bind(clientManager)
  clientManager.getDiscoverableClientMetadata = async function (clientId) {
    const entry = registeredClients.get(clientId)
    if (!entry) return originalGetDiscoverable(clientId)
    let raw = entry.metadata
    if (entry.metadataUrl) {
      const res = await fetch(entry.metadataUrl, { headers: { accept: 'application/json' } })
      if (!res.ok) throw new Error(`client metadata at ${entry.metadataUrl}: HTTP ${res.status}`)
      raw = await res.json()
    }
    const metadata = await oauthClientMetadataSchema.parseAsync(raw)
    return this.validateClientMetadata(clientId, metadata)
  }

  // Accounts.
  const accounts = []
  for (const name of ['alice', 'bob', 'carol']) {
    const handle = `${name}.test`
    const password = `${name}-password-e2e`
    const email = `${name}@example.com`
    const res = await fetch(`${pdsUrl}/xrpc/com.atproto.server.createAccount`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ handle, email, password }),
    })
    const body = await res.json()
    if (!res.ok) throw new Error(`createAccount ${handle}: HTTP ${res.status} ${JSON.stringify(body)}`)
    accounts.push({ handle, did: body.did, password, email })
  }

  // Admin endpoint.
  const adminToken = randomBytes(24).toString('hex')
  admin = http.createServer(async (req, res) => {
    const reply = (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    }
    try {
      const url = new URL(req.url, 'http://admin')
      if (req.method === 'GET' && url.pathname === '/health') return reply(200, { ok: true })
      if (req.headers.authorization !== `Bearer ${adminToken}`) return reply(401, { error: 'unauthorized' })
      const chunks = []
      for await (const c of req) chunks.push(c)
      const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {}
      if (url.pathname === '/clients' && req.method === 'POST') {
        const { client_id: clientId, metadata, metadata_url: metadataUrl } = body
        if (typeof clientId !== 'string' || !clientId.startsWith('https://')) {
          return reply(400, { error: 'client_id must be an https URL' })
        }
        if ((metadata == null) === (metadataUrl == null)) {
          return reply(400, { error: 'give exactly one of metadata, metadata_url' })
        }
        if (metadataUrl != null) {
          const u = new URL(metadataUrl)
          if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) {
            return reply(400, { error: 'metadata_url must be a loopback URL' })
          }
        }
        registeredClients.set(clientId, metadataUrl != null ? { metadataUrl } : { metadata })
        log('registered client', clientId)
        return reply(200, { ok: true })
      }
      if (url.pathname === '/clients' && req.method === 'DELETE') {
        return reply(200, { removed: registeredClients.delete(body.client_id) })
      }
      if (url.pathname === '/token-max-age' && req.method === 'POST') {
        const ms = Number(body.ms)
        if (!Number.isFinite(ms) || ms <= 0) return reply(400, { error: 'ms must be a positive number' })
        const previous = tokenManager.tokenMaxAge
        tokenManager.tokenMaxAge = ms
        return reply(200, { previous })
      }
      return reply(404, { error: 'not found' })
    } catch (err) {
      return reply(400, { error: String(err?.message ?? err) })
    }
  })
  admin.listen(0, LOOPBACK)
  await once(admin, 'listening')
  const adminUrl = `http://${LOOPBACK}:${admin.address().port}`

  const info = {
    plcUrl,
    pdsUrl,
    issuer,
    accounts,
    admin: { url: adminUrl, token: adminToken },
    tokenMaxAgeMs: tokenManager.tokenMaxAge,
    pid: process.pid,
    startedAt: new Date(startedAt).toISOString(),
    readyMs: Date.now() - startedAt,
  }
  fs.mkdirSync(path.dirname(outPath), { recursive: true })
  const tmpOut = `${outPath}.${process.pid}.tmp`
  fs.writeFileSync(tmpOut, JSON.stringify(info, null, 2) + '\n', { mode: 0o600 })
  fs.renameSync(tmpOut, outPath)
  console.log(`atsession e2e peer ready in ${info.readyMs} ms: pds ${pdsUrl} plc ${plcUrl} -> ${outPath}`)
} catch (err) {
  console.error('atsession e2e peer failed to start:', err)
  await stop(1)
}
