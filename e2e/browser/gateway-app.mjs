// The browser test of the gateway as a backend-for-frontend, driven as a person would:
// the app served by `atsession serve --static e2e/browser/app` → its sign-in form → the
// PDS's own sign-in and consent pages → back to the app, which reads the profile, creates
// a record and uploads an image through `/xrpc/` → a page of another site tries to write
// with the user's cookie → sign out → `/session` is 401. Prints one JSON object of what
// each step saw; the Rust test (crates/atsession-gateway/tests/browser.rs) judges it.
//
//   node gateway-app.mjs <gateway url> <handle> <password>
// Screenshots go to $ATSESSION_SCREENSHOTS when set.

import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { launch, shot, signInAndAuthorize } from './browser.mjs'

const [gateway, handle, password] = process.argv.slice(2)
if (!password) {
  console.error('usage: node gateway-app.mjs <gateway url> <handle> <password>')
  process.exit(2)
}
const here = path.dirname(fileURLToPath(import.meta.url))
const seen = { steps: [] }
const step = (name) => seen.steps.push(name)

// Another site: same host, another port (same-site for cookies, another origin).
const attackPage = fs.readFileSync(path.join(here, 'other', 'attack.html'))
const other = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
  res.end(attackPage)
})
await new Promise((ok) => other.listen(0, '127.0.0.1', ok))
const otherUrl = `http://127.0.0.1:${other.address().port}`

const { browser, close } = await launch()
const timeout = 30000
try {
  const page = await browser.newPage()
  page.setDefaultTimeout(timeout)
  await page.goto(`${gateway}/`, { waitUntil: 'load' })
  await page.waitForFunction(() => window.app?.ready === 'signed-out')
  await shot(page, '1-app-signed-out')
  step('app-signed-out')

  await page.type('#identifier', handle)
  await Promise.all([page.waitForNavigation(), page.click('#sign-in button')])
  await page.waitForNetworkIdle({ idleTime: 300 }).catch(() => {})
  seen.authorizationOrigin = new URL(page.url()).origin
  await shot(page, '2-pds-sign-in')
  await signInAndAuthorize(page, { handle, password })
  await page.waitForFunction((g) => location.href.startsWith(`${g}/notes`), {}, gateway)
  await page.waitForFunction(() => window.app?.ready === 'signed-in')
  await shot(page, '3-app-signed-in')
  step('signed-in')
  seen.profile = await page.evaluate(() => window.app.results.profile)

  await page.click('#note')
  await page.waitForFunction(() => window.app.results.note)
  await page.click('#image')
  await page.waitForFunction(() => window.app.results.image)
  await shot(page, '4-app-wrote')
  seen.note = await page.evaluate(() => window.app.results.note)
  seen.image = await page.evaluate(() => window.app.results.image)
  step('wrote')

  const attacker = await browser.newPage()
  attacker.setDefaultTimeout(timeout)
  const did = seen.profile?.json?.did ?? ''
  await attacker.goto(`${otherUrl}/attack.html?${new URLSearchParams({ gateway, did })}`)
  await attacker.waitForFunction(() => window.attack?.done === true)
  seen.attack = await attacker.evaluate(() => window.attack)
  await shot(attacker, '5-other-site')
  await attacker.close()
  step('attacked')

  const [logout] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/logout'),
    page.click('#sign-out'),
  ])
  seen.logout = logout.status()
  await page.waitForFunction(() => window.app?.ready === 'signed-out')
  seen.sessionAfterLogout = await page.evaluate(async () => (await fetch('/session')).status)
  await shot(page, '6-app-signed-out-again')
  step('signed-out')
} catch (e) {
  seen.error = String(e?.stack ?? e)
} finally {
  await close()
  other.close()
}
console.log(JSON.stringify(seen))
