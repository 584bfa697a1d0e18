// A small browser app with no backend of its own: it talks to the user's PDS through the
// gateway it is served from (`/xrpc/...`, the session cookie, `x-csrf: 1` on writes).
const $ = (id) => document.getElementById(id)
const log = (line) => { $('log').textContent += line + '\n' }
const xrpc = async (nsid, { method = 'GET', params, body, type } = {}) => {
  const url = `/xrpc/${nsid}` + (params ? '?' + new URLSearchParams(params) : '')
  const headers = { accept: 'application/json' }
  if (method !== 'GET') headers['x-csrf'] = '1'
  if (type) headers['content-type'] = type
  const r = await fetch(url, { method, headers, body, credentials: 'same-origin' })
  const text = await r.text()
  let json = null
  try { json = JSON.parse(text) } catch {}
  return { status: r.status, json }
}
// window.app: what the browser test reads.
window.app = { results: {} }

async function start() {
  const s = await fetch('/session', { headers: { accept: 'application/json' } })
  if (s.status !== 200) {
    $('out').hidden = false
    window.app.ready = 'signed-out'
    return
  }
  const me = await xrpc('com.atproto.server.getSession')
  window.app.results.profile = me
  $('handle').textContent = me.json?.handle ?? '?'
  $('did').textContent = me.json?.did ?? '?'
  $('in').hidden = false
  window.app.ready = 'signed-in'
}

$('note').addEventListener('click', async () => {
  const did = window.app.results.profile.json.did
  const r = await xrpc('com.atproto.repo.createRecord', {
    method: 'POST',
    type: 'application/json',
    body: JSON.stringify({
      repo: did,
      collection: 'com.example.note',
      record: { $type: 'com.example.note', text: 'written in a browser', createdAt: new Date().toISOString() },
    }),
  })
  window.app.results.note = r
  log(`note: HTTP ${r.status} ${r.json?.uri ?? JSON.stringify(r.json)}`)
})

$('image').addEventListener('click', async () => {
  // A 64x64 PNG drawn here, uploaded as the browser would upload a photo.
  const canvas = document.createElement('canvas')
  canvas.width = canvas.height = 64
  const ctx = canvas.getContext('2d')
  ctx.fillStyle = '#1761d6'
  ctx.fillRect(0, 0, 64, 64)
  const png = await new Promise((ok) => canvas.toBlob(ok, 'image/png'))
  const r = await xrpc('com.atproto.repo.uploadBlob', { method: 'POST', type: 'image/png', body: png })
  window.app.results.image = { ...r, size: png.size }
  log(`image: HTTP ${r.status} ${r.json?.blob?.ref?.$link ?? JSON.stringify(r.json)}`)
})

$('sign-out').addEventListener('click', async () => {
  const r = await fetch('/logout', { method: 'POST', headers: { 'x-csrf': '1' } })
  window.app.results.logout = r.status
  location.replace('/')
})

start()
