// Completes one authorization in Chromium as a person would: opens the URL (the PDS's
// page), signs in, authorizes, and waits until the browser lands on a URL starting with
// the given prefix (the client's redirect URI). Prints that page's text.
//
//   node authorize-url.mjs <authorization url> <redirect prefix> <handle> <password>

import { launch, signInAndAuthorize, shot } from './browser.mjs'

const [url, prefix, handle, password] = process.argv.slice(2)
if (!password) {
  console.error('usage: node authorize-url.mjs <url> <redirect prefix> <handle> <password>')
  process.exit(2)
}
const { browser, close } = await launch()
try {
  const page = await browser.newPage()
  await page.goto(url, { waitUntil: 'networkidle0' })
  await shot(page, 'pds-sign-in')
  await signInAndAuthorize(page, { handle, password })
  await page.waitForFunction((p) => location.href.startsWith(p), { timeout: 20000 }, prefix)
  await page.waitForNetworkIdle({ idleTime: 200 }).catch(() => {})
  await shot(page, 'redirected')
  console.log(await page.evaluate(() => document.body.innerText))
} finally {
  await close()
}
