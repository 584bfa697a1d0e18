// Shared by the reference-client scripts: the peer description, a configured
// @atproto/oauth-client-node client, and the user's sign-in step without a browser.
//
// The sign-in step uses node:http, not fetch: undici forces `sec-fetch-mode: cors`,
// and the PDS's authorization page wants navigate/same-origin requests.

import fs from 'node:fs'
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import {
  JoseKey,
  NodeOAuthClient,
  requestLocalLock,
} from '@atproto/oauth-client-node'

export const SCOPE = 'atproto transition:generic'

export function readPeer() {
  const path = process.env.ATSESSION_E2E_PDS
  if (!path) {
    console.error('set ATSESSION_E2E_PDS to the JSON written by e2e/pds/up.sh')
    process.exit(2)
  }
  return JSON.parse(fs.readFileSync(path, 'utf8'))
}

/** A Map-backed store with the shape the client wants. */
export function memoryStore() {
  const map = new Map()
  return {
    map,
    async get(key) { return map.get(key) },
    async set(key, value) { map.set(key, value) },
    async del(key) { map.delete(key) },
  }
}

/** A loopback (public) client, configured for the local PDS and PLC. */
export function loopbackClient(peer, { stateStore = memoryStore(), sessionStore = memoryStore(), fetch = undefined } = {}) {
  const redirectUri = 'http://127.0.0.1:8917/callback'
  const clientId = `http://localhost?${new URLSearchParams({ redirect_uri: redirectUri, scope: SCOPE })}`
  return new NodeOAuthClient({
    clientMetadata: {
      client_id: clientId,
      redirect_uris: [redirectUri],
      scope: SCOPE,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      dpop_bound_access_tokens: true,
    },
    allowHttp: true,
    handleResolver: peer.pdsUrl, // XRPC com.atproto.identity.resolveHandle
    plcDirectoryUrl: peer.plcUrl,
    requestLock: requestLocalLock,
    stateStore,
    sessionStore,
    ...(fetch ? { fetch } : {}),
  })
}

/**
 * A confidential web client (private_key_jwt) whose https client id is registered with
 * the harness, so the PDS validates this metadata as if fetched from the client's host.
 */
export async function confidentialClient(peer, { stateStore = memoryStore(), sessionStore = memoryStore() } = {}) {
  const clientId = 'https://client.example.com/client-metadata.json'
  const key = await JoseKey.generate(['ES256'], 'key-1')
  const clientMetadata = {
    client_id: clientId,
    client_name: 'atsession e2e confidential client',
    client_uri: 'https://client.example.com',
    redirect_uris: ['https://client.example.com/callback'],
    scope: SCOPE,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    application_type: 'web',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    dpop_bound_access_tokens: true,
    jwks: { keys: [key.publicJwk] },
  }
  const res = await fetch(`${peer.admin.url}/clients`, {
    method: 'POST',
    headers: { authorization: `Bearer ${peer.admin.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ client_id: clientId, metadata: clientMetadata }),
  })
  if (!res.ok) throw new Error(`register client: HTTP ${res.status} ${await res.text()}`)
  return new NodeOAuthClient({
    clientMetadata,
    keyset: [key],
    allowHttp: true,
    handleResolver: peer.pdsUrl,
    plcDirectoryUrl: peer.plcUrl,
    requestLock: requestLocalLock,
    stateStore,
    sessionStore,
  })
}

function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: keepAlive }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    if (body != null) req.write(body)
    req.end()
  })
}
const keepAlive = new http.Agent({ keepAlive: true })

function takeCookies(jar, res) {
  for (const line of res.headers['set-cookie'] ?? []) {
    const [pair] = line.split(';')
    const i = pair.indexOf('=')
    if (i > 0) jar.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim())
  }
}
const cookieHeader = (jar) => [...jar].map(([k, v]) => `${k}=${v}`).join('; ')

/** The user's step: returns the redirect URL (`<redirect_uri>?state&iss&code`). */
export async function signIn(authorizationUrl, username, password, { reject = false } = {}) {
  const url = new URL(authorizationUrl)
  const origin = url.origin
  const referer = url.href
  const jar = new Map()

  let res = await request(url, {
    headers: { 'sec-fetch-site': 'none', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', accept: 'text/html' },
  })
  takeCookies(jar, res)
  if (res.status !== 200) throw new Error(`authorization page: HTTP ${res.status} ${res.body.slice(0, 300)}`)

  const api = async (endpoint, payload) => {
    const r = await request(`${origin}/@atproto/oauth-provider/~api/${endpoint}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'sec-fetch-site': 'same-origin',
        'sec-fetch-mode': 'same-origin',
        'sec-fetch-dest': 'empty',
        origin,
        referer,
        'x-csrf-token': jar.get('csrf-token') ?? '',
        cookie: cookieHeader(jar),
      },
      body: JSON.stringify(payload),
    })
    takeCookies(jar, r)
    if (r.status !== 200) throw new Error(`${endpoint}: HTTP ${r.status} ${r.body.slice(0, 300)}`)
    return JSON.parse(r.body)
  }

  const { account } = await api('sign-in', { locale: 'en', username, password, remember: true })
  const { url: next } = reject ? await api('reject', {}) : await api('consent', { did: account.did })

  res = await request(new URL(next, origin), {
    headers: {
      'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document',
      referer, cookie: cookieHeader(jar),
    },
  })
  if (res.status !== 303 || !res.headers.location) {
    throw new Error(`authorize redirect: HTTP ${res.status} ${res.body.slice(0, 300)}`)
  }
  return res.headers.location
}

/**
 * One whole login: authorize (resolve, PAR) → user's step → callback (token exchange).
 * `phases`, when given, receives the milliseconds of each part.
 */
export async function login(client, account, phases = undefined) {
  const t0 = now()
  const authorizationUrl = await client.authorize(account.handle, { scope: SCOPE })
  const t1 = now()
  const redirect = await signIn(authorizationUrl.href, account.handle, account.password)
  const t2 = now()
  const { session } = await client.callback(new URL(redirect).searchParams)
  const t3 = now()
  if (phases) {
    phases.authorize = t1 - t0
    phases.user_step = t2 - t1
    phases.callback = t3 - t2
  }
  return session
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

export const now = () => performance.now()
