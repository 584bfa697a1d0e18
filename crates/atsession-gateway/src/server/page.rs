//! The gateway's own page at `/` when no app is served (`--static`): a sign-in form (a
//! handle field that goes to `/oauth/login`), and once signed in, who is signed in and a
//! sign-out button. The page asks `GET /session` who is signed in and signs out with
//! `POST /logout` and the `x-csrf: 1` header, as any app on the gateway would. It shows
//! what comes back with `textContent` only, never as HTML.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 26rem; margin: 4rem auto; padding: 0 1rem; color: #1b1b1f; }
  h1 { font-size: 1.4rem; }
  label { display: block; margin-bottom: .4rem; }
  input { width: 100%; box-sizing: border-box; padding: .6rem; font-size: 1rem; border: 1px solid #aab; border-radius: .4rem; }
  button { margin-top: .8rem; padding: .6rem 1.2rem; font-size: 1rem; border: 0; border-radius: .4rem; background: #1761d6; color: #fff; cursor: pointer; }
  .muted { color: #667; font-size: .9rem; }
  [hidden] { display: none; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; }
  dt { color: #667; } dd { margin: 0; overflow-wrap: anywhere; }
</style>
</head>
<body>
<main>
  <section id="signed-out" hidden>
    <h1>Sign in with your atproto account</h1>
    <form method="get" action="/oauth/login">
      <label for="identifier">Handle or DID</label>
      <input id="identifier" name="identifier" placeholder="alice.bsky.social" autocomplete="username" autocapitalize="none" spellcheck="false" required>
      <button type="submit">Sign in</button>
    </form>
    <p class="muted" id="error" hidden></p>
  </section>
  <section id="signed-in" hidden>
    <h1>Signed in</h1>
    <dl>
      <dt>Handle</dt><dd id="handle"></dd>
      <dt>DID</dt><dd id="did"></dd>
      <dt>Scope</dt><dd id="scope"></dd>
      <dt>Session ends</dt><dd id="expires"></dd>
    </dl>
    <button id="sign-out" type="button">Sign out</button>
  </section>
</main>
<script>
  const show = (id) => { document.getElementById(id).hidden = false }
  const text = (id, value) => { document.getElementById(id).textContent = value ?? '' }
  const params = new URLSearchParams(location.search)
  if (params.get('error')) {
    text('error', 'Sign-in failed: ' + params.get('error'))
    show('error')
  }
  fetch('/session', { credentials: 'same-origin', headers: { accept: 'application/json' } })
    .then(async (r) => {
      if (r.status !== 200) { show('signed-out'); return }
      const s = await r.json()
      text('handle', s.handle)
      text('did', s.did)
      text('scope', s.scope)
      const end = s.idle_expires_at ?? s.absolute_expires_at
      text('expires', end ? new Date(end).toLocaleString() : '')
      show('signed-in')
    })
    .catch(() => show('signed-out'))
  document.getElementById('sign-out').addEventListener('click', async () => {
    await fetch('/logout', { method: 'POST', credentials: 'same-origin', headers: { 'x-csrf': '1' } })
    location.replace('/')
  })
</script>
</body>
</html>
"#;

/// `GET /`: the page.
pub async fn index() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        PAGE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_shows_values_as_text_only() {
        assert!(!super::PAGE.contains("innerHTML"));
        assert!(super::PAGE.contains("'x-csrf': '1'"));
        assert!(super::PAGE.contains(r#"action="/oauth/login""#));
    }
}
