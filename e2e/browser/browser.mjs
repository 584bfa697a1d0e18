// Headless Chromium (Debian's /usr/bin/chromium, no download) kept on loopback, and the
// steps a person takes on the official PDS's sign-in and consent pages.
//
//   import { launch, signInAndAuthorize, shot } from './browser.mjs'

import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import puppeteer from 'puppeteer-core'

export const CHROMIUM = process.env.ATSESSION_CHROMIUM ?? '/usr/bin/chromium'

/** A loopback port that nothing listens on (bound, then closed): the proxy that goes nowhere. */
async function closedPort() {
  const srv = net.createServer()
  await new Promise((ok) => srv.listen(0, '127.0.0.1', ok))
  const { port } = srv.address()
  await new Promise((ok) => srv.close(ok))
  return port
}

/** Starts Chromium with a fresh profile; every non-loopback host is unreachable. */
export async function launch() {
  const dead = await closedPort()
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'atsession-chromium-'))
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: [
      '--no-sandbox', // the tests run as root
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-domain-reliability',
      '--disable-sync',
      '--no-pings',
      `--proxy-server=http://127.0.0.1:${dead}`,
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]',
      `--gaia-url=http://127.0.0.1:${dead}`,
    ],
  })
  const close = async () => {
    await browser.close().catch(() => {})
    fs.rmSync(profile, { recursive: true, force: true })
  }
  return { browser, close }
}

/** Waits for a button whose text matches `re` and clicks it. */
export async function clickButton(page, re, timeout = 15000) {
  const handle = await page.waitForFunction(
    (source) => {
      const r = new RegExp(source, 'i')
      return [...document.querySelectorAll('button')].find(
        (b) => r.test(b.textContent ?? '') && !b.disabled,
      )
    },
    { timeout },
    re.source,
  )
  await handle.asElement().click()
}

/**
 * On the PDS's authorization page (already loaded in `page`): types the password (and the
 * handle when the page asks for it), clicks "Sign in", then "Authorize".
 */
export async function signInAndAuthorize(page, { handle, password }) {
  await page.waitForSelector('input[type="password"]', { timeout: 20000 })
  const user = await page.$('input[name="username"], input[autocomplete="username"]')
  if (user && !(await user.evaluate((el) => el.value))) await user.type(handle)
  await page.type('input[type="password"]', password)
  await clickButton(page, /^\s*sign in\s*$/)
  await clickButton(page, /^\s*authorize\s*$/)
}

/** Saves a screenshot when ATSESSION_SCREENSHOTS names a folder. */
export async function shot(page, name) {
  const dir = process.env.ATSESSION_SCREENSHOTS
  if (!dir) return
  fs.mkdirSync(dir, { recursive: true })
  await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true })
}
