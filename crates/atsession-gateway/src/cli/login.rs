//! `atsession login <handle>` and `atsession logout`: a terminal user's OAuth login with the
//! loopback (public) client, stored in the local SQLite database.
//!
//! The OAuth grant is sealed at rest (AES-256-GCM) under a key taken from, in order:
//! the `ATSESSION_AT_REST_KEY` environment variable (`kid:base64url(32 bytes)`), the file
//! given by `--key-file`, or the file `<db>.key` next to the database, which is generated
//! (mode 0600) on first use. Losing the key makes the stored grants unreadable; keep it
//! with the database.
//!
//! The client id is `http://localhost?redirect_uri=http://127.0.0.1/callback&scope=…`: its
//! loopback redirect URI has no port, so the port picked at each login (a free one, or
//! `--port`) is accepted, and `logout` later authenticates as the same client.
//!
//! `--scope` (or `ATSESSION_SCOPE`) chooses the permissions asked for, e.g.
//! `atproto repo:com.example.note?action=create`; the loopback client id declares exactly
//! that scope. It is checked before anything is sent (an invalid scope is refused, naming
//! what is wrong), remembered in `<db>.scope` so that `logout` and `call` authenticate as
//! the same client, and after the login every scope the server did not grant is named.

use std::path::PathBuf;
use std::time::Duration;

use atsession::crypto::AtRestKeyring;
use atsession::oauth::DEFAULT_PLC_URL;
use atsession::oauth::{
    AuthorizeOptions, CallbackParams, ClientMetadata, OAuthClient, OAuthClientConfig, ScopeSet, Url,
};
use atsession::store::AnyStore;
use atsession::syntax::Did;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::CliError;
use crate::setup::{
    KEY_ENV, SCOPE, SCOPE_ENV, identity_config, load_keyring, sibling, sqlite_file,
};

/// The environment variable for `--did` of `logout` and `call`.
pub const DID_ENV: &str = "ATSESSION_DID";
/// The registered loopback redirect URI (no port: any port is accepted).
pub const REDIRECT: &str = "http://127.0.0.1/callback";

/// Options shared by `login` and `logout`.
#[derive(Debug, Args)]
pub struct OAuthOptions {
    /// The store holding the OAuth grants: a SQLite file, or a store URL (`sqlite://…`,
    /// `postgres://…`, `redis://…`, `rediss://…`, `memory:`).
    #[arg(long, default_value = "./atsession.db", env = "ATSESSION_DB")]
    pub db: String,
    /// The at-rest key file (default: `<db>.key`, created on first use). The
    /// `ATSESSION_AT_REST_KEY` environment variable takes precedence.
    #[arg(long, env = "ATSESSION_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// The PLC directory.
    #[arg(long, default_value = DEFAULT_PLC_URL, env = "ATSESSION_PLC_URL")]
    pub plc_url: Url,
    /// Resolve handles with `com.atproto.identity.resolveHandle` on this service instead
    /// of DNS and HTTPS.
    #[arg(long, env = "ATSESSION_HANDLE_RESOLVER")]
    pub handle_resolver: Option<Url>,
    /// Development mode: allow http and loopback servers (a local PDS). Never for real
    /// accounts.
    #[arg(long, env = "ATSESSION_DEV", value_parser = clap::builder::BoolishValueParser::new())]
    pub dev: bool,
}

/// `atsession login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// A handle (`alice.bsky.social`), a DID, or a PDS/entryway URL.
    pub handle: String,
    /// Open the authorization URL in a browser (`xdg-open`).
    #[arg(long, env = "ATSESSION_LOGIN_OPEN", value_parser = clap::builder::BoolishValueParser::new())]
    pub open: bool,
    /// The loopback port to listen on for the redirect (default: a free one).
    #[arg(long, default_value_t = 0, env = "ATSESSION_LOGIN_PORT")]
    pub port: u16,
    /// How long to wait for the redirect, in seconds.
    #[arg(long, default_value_t = 600, env = "ATSESSION_LOGIN_WAIT_SECS")]
    pub wait_secs: u64,
    /// The permissions to ask for, space-separated (default: the scope of the previous
    /// login with this database, else `atproto transition:generic`). Remembered in
    /// `<db>.scope` for `logout` and `call`.
    #[arg(long, env = SCOPE_ENV)]
    pub scope: Option<String>,
    /// Shared options.
    #[command(flatten)]
    pub oauth: OAuthOptions,
}

/// `atsession logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The account to log out (default: the last one logged in with this database).
    #[arg(long, env = DID_ENV)]
    pub did: Option<String>,
    /// Shared options.
    #[command(flatten)]
    pub oauth: OAuthOptions,
}

/// The at-rest keyring: from the environment, the key file, or a new key file.
fn keyring(opts: &OAuthOptions) -> Result<AtRestKeyring, CliError> {
    load_keyring(&opts.db, opts.key_file.as_deref())
}

/// The scope the command-line client declares: the one remembered next to `db` by the
/// last `login`, or [`SCOPE`].
pub fn client_scope(db: &str) -> String {
    std::fs::read_to_string(sibling(db, ".scope"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| SCOPE.to_owned())
}

pub(crate) async fn client(opts: &OAuthOptions) -> Result<OAuthClient<AnyStore>, CliError> {
    client_with_scope(opts, &client_scope(&opts.db)).await
}

async fn client_with_scope(
    opts: &OAuthOptions,
    scope: &str,
) -> Result<OAuthClient<AnyStore>, CliError> {
    let metadata = ClientMetadata::loopback(&[REDIRECT], scope)
        .map_err(|e| format!("invalid scope `{scope}`: {}", ErrorChain(&e)))?;
    let store = atsession::store::open(&opts.db).await?;
    let config = OAuthClientConfig::new(metadata, keyring(opts)?)
        .dev_mode(opts.dev)
        .identity(identity_config(
            opts.plc_url.clone(),
            opts.handle_resolver.clone(),
        ));
    Ok(OAuthClient::new(config, store)?)
}

// An error and its causes on one line.
use atsession::ErrorChain;

/// The scopes of `asked` that `granted` does not hold (compared in canonical form).
pub fn not_granted(asked: &str, granted: &str) -> Vec<String> {
    let (Ok(asked), Ok(granted)) = (
        ScopeSet::parse_granted(asked),
        ScopeSet::parse_granted(granted),
    ) else {
        return Vec::new();
    };
    asked
        .difference(&granted)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Runs `atsession login`. A login that fails before a grant is stored leaves no database
/// and no key file behind that it created.
pub async fn login(args: LoginArgs) -> Result<(), CliError> {
    let scope = args
        .scope
        .as_deref()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| client_scope(&args.oauth.db));
    let created = Created::before(&args.oauth);
    let client = match client_with_scope(&args.oauth, &scope).await {
        Ok(c) => c,
        Err(e) => return Err(created.undo(e)),
    };
    let done = match authorize_and_wait(&args, &client).await {
        Ok(done) => done,
        Err(e) => {
            drop(client);
            return Err(created.undo(e));
        }
    };
    let ts = &done.grant.token_set;
    std::fs::write(sibling(&args.oauth.db, ".last-did"), ts.sub.as_str())?;
    std::fs::write(sibling(&args.oauth.db, ".scope"), &scope)?;
    println!(
        "Logged in as {} on {} (grant {}, scope `{}`).",
        ts.sub, ts.aud, done.grant.grant_id, ts.scope
    );
    for missing in not_granted(&scope, &ts.scope) {
        println!(
            "The server did not grant the scope `{missing}`: calls that need it will be refused."
        );
    }
    Ok(())
}

async fn authorize_and_wait(
    args: &LoginArgs,
    client: &OAuthClient<AnyStore>,
) -> Result<atsession::oauth::Callback, CliError> {
    let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let url = client
        .authorize(
            &args.handle,
            AuthorizeOptions {
                redirect_uri: Some(redirect_uri),
                ..AuthorizeOptions::default()
            },
        )
        .await
        .map_err(explain_http)?;
    println!("Open this URL to log in:\n\n  {url}\n");
    if args.open
        && let Err(e) = std::process::Command::new("xdg-open")
            .arg(url.as_str())
            .spawn()
    {
        eprintln!("could not open a browser ({e}); open the URL yourself");
    }
    eprintln!("waiting for the redirect on http://127.0.0.1:{port}/callback …");
    tokio::time::timeout(
        Duration::from_secs(args.wait_secs),
        wait_for_redirect(&listener, client),
    )
    .await
    .map_err(|_| "timed out waiting for the redirect")?
}

/// The files a login may create, and which of them existed before it.
pub(crate) struct Created {
    files: Vec<PathBuf>,
}

impl Created {
    fn before(opts: &OAuthOptions) -> Self {
        let db = &opts.db;
        let mut files = Vec::new();
        if let Some(file) = sqlite_file(db)
            && !file.exists()
        {
            files.extend([
                sibling(db, ""),
                sibling(db, "-wal"),
                sibling(db, "-shm"),
                sibling(db, "-journal"),
            ]);
        }
        let key = crate::setup::key_file_path(db, opts.key_file.as_deref());
        if std::env::var_os(KEY_ENV).is_none() && !key.exists() {
            files.push(key);
        }
        Self { files }
    }

    /// Removes what this command created, and hands back its error.
    pub(crate) fn undo(self, e: CliError) -> CliError {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        e
    }
}

/// Names `--dev` when an `http://` or non-public address was refused.
pub(crate) fn explain_http(e: atsession::oauth::OAuthError) -> CliError {
    use atsession::oauth::HttpError;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        // The refusal is the source of `HttpError::Url`, boxed.
        let refusal = s
            .downcast_ref::<HttpError>()
            .or_else(|| s.downcast_ref::<Box<HttpError>>().map(|b| &**b));
        if matches!(
            refusal,
            Some(HttpError::Scheme(_) | HttpError::NotPublic(_))
        ) {
            return Box::new(DevHint(e));
        }
        source = s.source();
    }
    e.into()
}

/// An error whose cause is an address refused outside development mode.
#[derive(Debug, thiserror::Error)]
#[error("refused: a local PDS on http:// or a loopback address needs --dev (or ATSESSION_DEV=1)")]
struct DevHint(#[source] atsession::oauth::OAuthError);

/// Accepts connections until the callback of this login comes; answers each with a short
/// page. A request that is not a callback, or a callback whose `state` is not this login's
/// (a stray request, an old tab), is answered and the wait goes on. The callback is
/// completed (code exchanged, grant stored) before the page says the login succeeded.
async fn wait_for_redirect(
    listener: &TcpListener,
    client: &OAuthClient<AnyStore>,
) -> Result<atsession::oauth::Callback, CliError> {
    use atsession::oauth::{CallbackError, OAuthError};
    loop {
        let (mut sock, _) = listener.accept().await?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut n = 0;
        // Read the request line and headers (up to the blank line or the buffer's end).
        while n < buf.len() {
            let m = sock.read(&mut buf[n..]).await?;
            if m == 0 {
                break;
            }
            n += m;
            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let head = String::from_utf8_lossy(&buf[..n]);
        let target = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("GET "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or_default()
            .to_owned();
        let Some(query) = target.strip_prefix("/callback?") else {
            let _ = respond(&mut sock, "404 Not Found", "Not the callback.").await;
            continue;
        };
        let Ok(params) = CallbackParams::from_query(query) else {
            let _ = respond(&mut sock, "400 Bad Request", "Malformed callback.").await;
            continue;
        };
        match client.callback(&params).await {
            Ok(done) => {
                let _ = respond(
                    &mut sock,
                    "200 OK",
                    "Login complete. You can close this window and return to the terminal.",
                )
                .await;
                return Ok(done);
            }
            Err(OAuthError::Callback(
                CallbackError::UnknownState | CallbackError::MissingState,
            )) => {
                let _ = respond(
                    &mut sock,
                    "400 Bad Request",
                    "This is not the login the terminal is waiting for.",
                )
                .await;
            }
            Err(e) => {
                let _ = respond(
                    &mut sock,
                    "400 Bad Request",
                    "Login failed. The terminal says why.",
                )
                .await;
                return Err(e.into());
            }
        }
    }
}

async fn respond(
    sock: &mut tokio::net::TcpStream,
    status: &str,
    text: &str,
) -> std::io::Result<()> {
    let body = format!("<!doctype html><meta charset=utf-8><title>atsession</title><p>{text}</p>");
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(resp.as_bytes()).await?;
    sock.shutdown().await
}

/// Runs `atsession logout`. Creates no database and no key file.
pub async fn logout(args: LogoutArgs) -> Result<(), CliError> {
    let created = existing_database(&args.oauth, "nothing to log out")?;
    logout_stored(args).await.map_err(|e| created.undo(e))
}

/// Refuses a SQLite database that does not exist (a command that only uses stored grants
/// must not create one), and notes what the command may still create (a key file), so
/// that a failure can remove it.
pub(crate) fn existing_database(opts: &OAuthOptions, why: &str) -> Result<Created, CliError> {
    if let Some(file) = sqlite_file(&opts.db)
        && !file.exists()
    {
        return Err(format!(
            "no database at {}: {why} (give the path with --db or ATSESSION_DB, or run `atsession login` first)",
            file.display()
        )
        .into());
    }
    Ok(Created::before(opts))
}

async fn logout_stored(args: LogoutArgs) -> Result<(), CliError> {
    let did = match args.did {
        Some(d) => d,
        None => std::fs::read_to_string(sibling(&args.oauth.db, ".last-did"))
            .map_err(|_| "no --did given and no previous login recorded next to the database")?,
    };
    let did = Did::new(did.trim())?;
    let client = client(&args.oauth).await?;
    let grants = client.grants_of(&did).await?;
    if grants.is_empty() {
        println!("No OAuth grant stored for {did}.");
        return Ok(());
    }
    let mut failed = None;
    // Through the session getter, so that its `Deleted` event fires for every sign-out.
    let lock = client.store().lock();
    let getter = atsession::oauth::SessionGetter::new(
        client,
        atsession::oauth::GetterConfig::default().lock(lock),
    );
    for grant in &grants {
        // Revokes at the server, then deletes (even when revoking failed).
        if let Err(e) = getter.sign_out(grant).await {
            eprintln!("grant {grant}: revoking at the server failed: {e}");
            failed = Some(e);
        }
    }
    println!("Logged out {did}: {} grant(s) deleted.", grants.len());
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_not_granted_are_named() {
        let asked = "atproto repo:com.example.note?action=create repo:app.bsky.feed.post";
        assert_eq!(
            not_granted(asked, "atproto repo:com.example.note?action=create"),
            ["repo:app.bsky.feed.post"]
        );
        // Compared in canonical form: another spelling of the same scope is granted.
        assert!(
            not_granted(
                asked,
                "repo?collection=app.bsky.feed.post atproto repo:com.example.note?action=create"
            )
            .is_empty()
        );
    }

    #[test]
    fn the_client_scope_is_remembered_next_to_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cli.db").to_str().unwrap().to_owned();
        assert_eq!(client_scope(&db), SCOPE);
        std::fs::write(sibling(&db, ".scope"), "atproto repo:com.example.note\n").unwrap();
        assert_eq!(client_scope(&db), "atproto repo:com.example.note");
    }
}
