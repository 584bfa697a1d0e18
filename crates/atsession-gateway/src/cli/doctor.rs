//! `atsession doctor [URL]`: checks a deployment as an authorization server will see it.
//!
//! With a URL, the published documents: the client metadata (fetched as an authorization
//! server fetches it: HTTP 200 with no redirect followed, an `application/json` body of at
//! most 64 KiB, and the atproto rules for its fields), the client's public keys (inline or
//! at its `jwks_uri`, fetched by the same rules) and whether they match the private keys
//! given with `--client-keys`. URL is the metadata URL itself (the `client_id`), or the
//! base URL of a gateway, ending in `/` (its metadata is `<base>oauth/client-metadata.json`,
//! where `atsession serve` publishes it), or a loopback client id (`http://localhost?…`,
//! nothing to fetch). Without a URL, the gateway's public URL from `ATSESSION_PUBLIC_URL`
//! is checked, if set.
//!
//! Locally, always: whether the at-rest keys (`ATSESSION_AT_REST_KEY` or the key file)
//! open every grant in the store, as `serve` needs them to.
//!
//! `--via ORIGIN` fetches the documents of the URL's origin from another origin (the
//! gateway behind its TLS proxy, before DNS points at it); the checks still judge them as
//! published at URL. Each check prints one line, `ok`, `warn` or `FAIL` with its reason, or
//! with `--json` one object `{"ok", "checks": [{"name", "status", "detail"}]}`; the exit
//! status is non-zero when a check fails. Nothing secret is printed, and nothing stored is
//! changed (a SQLite file is opened read-only).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use atsession::crypto::AtRestKeyring;
use atsession::oauth::Jwk;
use atsession::oauth::key_rotation::{check_keyring, key_usage, open_grants};
use atsession::oauth::reqwest;
use atsession::oauth::{ClientMetadata, first_undeclared};
use atsession::oauth::{DEFAULT_MAX_BODY, HttpOptions, build_client, check_url};
use atsession::oauth::{Jwks, Keyset};
use atsession::oauth::{Scope, ScopeSet, Url};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use super::CliError;
use crate::setup::{KEY_ENV, key_file_path, read_keyring};

/// Where a gateway publishes its client metadata, relative to its base URL.
const METADATA_PATH: &str = "oauth/client-metadata.json";
/// The database checked when `--db` is not given, if it exists.
const DEFAULT_DB: &str = "./atsession.db";

/// `atsession doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The client metadata URL (the client id), a gateway's base URL ending in `/` (checks
    /// `<URL>oauth/client-metadata.json`), or a loopback client id (`http://localhost?…`).
    /// Without it, only the local checks run.
    #[arg(env = "ATSESSION_PUBLIC_URL")]
    pub url: Option<String>,
    /// Fetch the documents of URL's origin from this origin instead (e.g.
    /// `http://127.0.0.1:8080`, the gateway behind its TLS proxy); they are still judged as
    /// published at URL.
    #[arg(long, env = "ATSESSION_DOCTOR_VIA", value_name = "ORIGIN")]
    pub via: Option<String>,
    /// The confidential client's private keys (the JWKS file `serve` signs with): the
    /// published keys must match them.
    #[arg(long, env = "ATSESSION_CLIENT_KEYS")]
    pub client_keys: Option<PathBuf>,
    /// The scope the client asks for: the metadata's `scope` must declare each of its
    /// scopes.
    #[arg(long, default_value = crate::setup::SCOPE, env = "ATSESSION_SCOPE")]
    pub scope: String,
    /// The store holding the OAuth grants (default: `./atsession.db` if it exists): a
    /// SQLite file or a store URL (`sqlite://…`, `postgres://…`, `redis://…`, `rediss://…`).
    #[arg(long, env = "ATSESSION_DB")]
    pub db: Option<String>,
    /// The at-rest key file (default: `<db>.key`). `ATSESSION_AT_REST_KEY` takes
    /// precedence.
    #[arg(long, env = "ATSESSION_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Development mode: accept `http://` and loopback or private addresses in the URL,
    /// the redirect URIs on its origin and the `jwks_uri` (a local deployment).
    #[arg(long, env = "ATSESSION_DEV", value_parser = clap::builder::BoolishValueParser::new())]
    pub dev: bool,
    /// Print one JSON object instead of lines.
    #[arg(long, env = "ATSESSION_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    pub json: bool,
    /// The `serve` config file (TOML, as `serve --config`): its `public-url`, `client-keys`,
    /// `scope`, `db`, `key-file` and `dev` are checked; its other keys are skipped. A flag or
    /// environment variable wins over the file.
    #[arg(long, env = "ATSESSION_CONFIG")]
    pub config: Option<PathBuf>,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

/// One check's outcome.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
}

/// The checks made, in order.
#[derive(Debug, Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
        });
    }
    fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.add(name, Status::Ok, detail);
    }
    fn warn(&mut self, name: &'static str, detail: impl Into<String>) {
        self.add(name, Status::Warn, detail);
    }
    fn fail(&mut self, name: &'static str, detail: impl Into<String>) {
        self.add(name, Status::Fail, detail);
    }
    /// `ok` or `FAIL` with the first problem found.
    fn result(&mut self, name: &'static str, r: Result<String, String>) {
        match r {
            Ok(d) => self.ok(name, d),
            Err(d) => self.fail(name, d),
        }
    }
    fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }
}

/// The doctor found a problem (the report says which).
#[derive(Debug, thiserror::Error)]
#[error("{0} check(s) failed")]
struct Failed(usize);

/// Runs `atsession doctor`.
pub async fn doctor(args: DoctorArgs) -> Result<(), CliError> {
    let mut report = Report::default();
    let keyset = client_keys(&args, &mut report);
    match &args.url {
        Some(url) => remote(&args, url.trim(), keyset.as_ref(), &mut report).await,
        None => report.warn(
            "url",
            "no URL given (nor ATSESSION_PUBLIC_URL): the published documents were not checked",
        ),
    }
    at_rest(&args, &mut report).await;
    print(&report, args.json)?;
    match report.failed() {
        0 => Ok(()),
        n => Err(Failed(n).into()),
    }
}

fn print(report: &Report, json: bool) -> Result<(), CliError> {
    if json {
        let out = serde_json::json!({
            "ok": report.failed() == 0,
            "checks": report.checks,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    for c in &report.checks {
        let (word, code) = match c.status {
            Status::Ok => ("ok", "32"),
            Status::Warn => ("warn", "33"),
            Status::Fail => ("FAIL", "31"),
        };
        let word = if colour {
            format!("\x1b[{code}m{word:<4}\x1b[0m")
        } else {
            format!("{word:<4}")
        };
        println!("{word}  {:<width$}  {}", c.name, c.detail);
    }
    Ok(())
}

// An error and its causes on one line.
use atsession::ErrorChain;

/// The private keys of `--client-keys`, if given and usable.
fn client_keys(args: &DoctorArgs, report: &mut Report) -> Option<Keyset> {
    let path = args.client_keys.as_ref()?;
    // (Messages name the file, never its content.)
    let parsed = crate::setup::small_file::read(path)
        .map_err(|e| ErrorChain(&e).to_string())
        .and_then(|text| {
            serde_json::from_str::<Jwks>(&text)
                .map_err(|_| format!("{} is not a JWKS (JSON with `keys`)", path.display()))
        })
        .and_then(|jwks| {
            Keyset::from_private_jwks(&jwks)
                .map_err(|e| format!("{}: {}", path.display(), ErrorChain(&e)))
        });
    match parsed {
        Ok(keyset) => {
            let n = keyset.public_jwks().keys.len();
            report.ok(
                "client_keys",
                format!(
                    "{}: {n} private key(s), signing with `{}`",
                    path.display(),
                    keyset.signing_key().kid().unwrap_or_default()
                ),
            );
            Some(keyset)
        }
        Err(e) => {
            report.fail("client_keys", e);
            None
        }
    }
}

/// What was fetched, as an authorization server would see it.
struct Fetched {
    status: u16,
    location: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Why a fetch gave nothing to judge.
enum FetchError {
    TooLarge,
    Transport(String),
}

/// GETs `url` (no redirect followed), reading at most [`DEFAULT_MAX_BODY`] bytes.
async fn fetch(http: &reqwest::Client, url: &Url) -> Result<Fetched, FetchError> {
    let transport =
        |e: reqwest::Error| FetchError::Transport(ErrorChain(&e.without_url()).to_string());
    let mut response = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(transport)?;
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let location = header(reqwest::header::LOCATION);
    let content_type = header(reqwest::header::CONTENT_TYPE);
    let status = response.status().as_u16();
    if response
        .content_length()
        .is_some_and(|n| n > DEFAULT_MAX_BODY as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > DEFAULT_MAX_BODY {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        status,
        location,
        content_type,
        body,
    })
}

/// How the documents are reached.
struct Net {
    /// For URLs on the client's origin: `--via`, if given.
    via: Option<Url>,
    /// The client's origin.
    origin: atsession::oauth::url::Origin,
    /// The client for `--via` (which may be a loopback address).
    direct: reqwest::Client,
    /// The client for everything else: public addresses only outside `--dev`.
    public: reqwest::Client,
    dev: bool,
}

impl Net {
    /// Where `url` is fetched from, and with which client.
    fn target(&self, url: &Url) -> (Url, &reqwest::Client) {
        match &self.via {
            Some(via) if url.origin() == self.origin => {
                let mut t = via.clone();
                t.set_path(url.path());
                t.set_query(url.query());
                (t, &self.direct)
            }
            _ => (url.clone(), &self.public),
        }
    }

    /// Fetches a JSON document under `name` (200, no redirect, JSON, bounded); `None`
    /// when there is nothing to judge. A wrong content type fails `content_type` but the
    /// body is still judged.
    async fn get_json(
        &self,
        report: &mut Report,
        names: (&'static str, &'static str),
        url: &Url,
    ) -> Option<Value> {
        let (fetch_name, type_name) = names;
        let (target, http) = self.target(url);
        let via = if &target == url {
            String::new()
        } else {
            format!(" (via {})", target.origin().ascii_serialization())
        };
        let fetched = match fetch(http, &target).await {
            Ok(f) => f,
            Err(FetchError::TooLarge) => {
                report.fail(
                    fetch_name,
                    format!("{url}{via} answers more than {DEFAULT_MAX_BODY} bytes"),
                );
                return None;
            }
            Err(FetchError::Transport(e)) => {
                report.fail(fetch_name, format!("cannot fetch {url}{via}: {e}"));
                return None;
            }
        };
        match fetched.status {
            200 => report.ok(
                fetch_name,
                format!("HTTP 200 from {url}{via}, {} bytes", fetched.body.len()),
            ),
            300..=399 => {
                let to = fetched.location.as_deref().unwrap_or("nowhere");
                report.fail(
                    fetch_name,
                    format!(
                        "{url}{via} answers HTTP {} redirecting to {to}: an authorization server follows no redirect; serve the document at this very URL",
                        fetched.status
                    ),
                );
                return None;
            }
            s => {
                let hint = if s == 404 && url.path().ends_with(METADATA_PATH) {
                    " (a gateway with an http:// public URL is a loopback client and publishes no metadata)"
                } else {
                    ""
                };
                report.fail(fetch_name, format!("{url}{via} answers HTTP {s}{hint}"));
                return None;
            }
        }
        let media = fetched.content_type.as_deref().map(|c| {
            c.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
        match media.as_deref() {
            Some("application/json") => report.ok(type_name, "application/json"),
            Some(other) => report.fail(
                type_name,
                format!("content type `{other}`: an authorization server wants application/json"),
            ),
            None => report.fail(
                type_name,
                "no content type: an authorization server wants application/json",
            ),
        }
        match serde_json::from_slice::<Value>(&fetched.body) {
            Ok(v) if v.is_object() => Some(v),
            _ => {
                report.fail(fetch_name, format!("{url}{via} is not a JSON object"));
                None
            }
        }
    }

    /// Checks a URL a document names against the fetching policy.
    fn check(&self, url: &Url) -> Result<(), String> {
        check_url(url, self.dev).map_err(|e| {
            let hint = if self.dev {
                ""
            } else {
                " (--dev for a local deployment)"
            };
            format!("{url}: {e}{hint}")
        })
    }
}

/// Whether `url` is a loopback client id (`http://localhost` with no port or path).
fn is_loopback_client_id(url: &Url) -> bool {
    url.scheme() == "http"
        && url.host_str() == Some("localhost")
        && url.port().is_none()
        && matches!(url.path(), "" | "/")
}

async fn remote(args: &DoctorArgs, raw: &str, keyset: Option<&Keyset>, report: &mut Report) {
    let Ok(given) = Url::parse(raw) else {
        report.fail("url", format!("`{raw}` is not a URL"));
        return;
    };
    if is_loopback_client_id(&given) {
        loopback(&given, &args.scope, report);
        return;
    }
    let (metadata_url, client_id) = if given.path().ends_with('/') && given.query().is_none() {
        match given.join(METADATA_PATH) {
            Ok(u) => {
                let id = u.to_string();
                (u, id)
            }
            Err(_) => {
                report.fail("url", format!("`{raw}` is not a base URL"));
                return;
            }
        }
    } else {
        (given.clone(), raw.to_owned())
    };
    let policy = check_url(&metadata_url, args.dev);
    if let Err(e) = policy {
        let hint = if metadata_url.scheme() == "http" && !args.dev {
            " (a gateway with an http:// public URL is a loopback client and publishes no metadata; --dev checks a local deployment)"
        } else if args.dev {
            ""
        } else {
            " (--dev for a local deployment)"
        };
        report.fail(
            "url",
            format!("{client_id}: {e}: an authorization server will not fetch it{hint}"),
        );
        return;
    }
    if metadata_url.fragment().is_some() {
        report.fail("url", format!("{client_id}: a client id has no fragment"));
        return;
    }
    report.ok("url", format!("client id {client_id}"));
    let via = match args.via.as_deref().map(parse_via).transpose() {
        Ok(v) => v,
        Err(e) => {
            report.fail("via", e);
            return;
        }
    };
    let build = |dev_mode| {
        build_client(&HttpOptions {
            dev_mode,
            ..HttpOptions::default()
        })
    };
    let (direct, public) = match (build(true), build(args.dev)) {
        (Ok(d), Ok(p)) => (d, p),
        (Err(e), _) | (_, Err(e)) => {
            report.fail("metadata.fetch", ErrorChain(&e).to_string());
            return;
        }
    };
    let net = Net {
        via,
        origin: metadata_url.origin(),
        direct,
        public,
        dev: args.dev,
    };
    let Some(doc) = net
        .get_json(
            report,
            ("metadata.fetch", "metadata.content_type"),
            &metadata_url,
        )
        .await
    else {
        return;
    };
    let app_type = metadata_fields(&doc, &metadata_url, &client_id, &args.scope, &net, report);
    match serde_json::from_value::<ClientMetadata>(doc.clone()) {
        Ok(_) => report.ok("metadata.schema", "reads as client metadata"),
        Err(e) => report.fail(
            "metadata.schema",
            format!("does not read as client metadata: {e}"),
        ),
    }
    auth_method(&doc, app_type, &metadata_url, keyset, &net, report).await;
}

/// `--via`: an origin, nothing else.
fn parse_via(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|_| format!("--via `{s}` is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || url.path() != "/"
        || url.query().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!(
            "--via `{s}` is not an origin: give only the scheme, host and port (http://127.0.0.1:8080)"
        ));
    }
    Ok(url)
}

/// A loopback client id: the server derives the metadata from it; nothing is fetched.
fn loopback(id: &Url, asked: &str, report: &mut Report) {
    let mut redirects: Vec<String> = Vec::new();
    let mut scope = None;
    for (k, v) in id.query_pairs() {
        match k.as_ref() {
            "redirect_uri" => redirects.push(v.into_owned()),
            "scope" => scope = Some(v.into_owned()),
            _ => {}
        }
    }
    report.ok(
        "url",
        "a loopback client id: the authorization server derives its metadata from it, nothing is published",
    );
    if redirects.is_empty() {
        redirects = vec!["http://127.0.0.1/".into(), "http://[::1]/".into()];
    }
    let scope = scope.unwrap_or_else(|| "atproto".into());
    let refs: Vec<&str> = redirects.iter().map(String::as_str).collect();
    match ClientMetadata::loopback(&refs, &scope) {
        Ok(_) => report.ok("metadata.redirect_uris", redirects.join(" ")),
        Err(e) => report.fail("metadata.redirect_uris", ErrorChain(&e).to_string()),
    }
    report.result("metadata.scope", scope_covers(&scope, asked));
}

/// `scope` declared by the client: valid, with `atproto`, no duplicate, declaring every
/// scope of `asked`.
fn scope_covers(declared: &str, asked: &str) -> Result<String, String> {
    let set = ScopeSet::parse(declared).map_err(|e| format!("`{declared}`: {}", ErrorChain(&e)))?;
    if !set.contains(&Scope::Atproto) {
        return Err(format!("`{declared}` lacks `atproto`"));
    }
    let words: Vec<&str> = declared.split(' ').collect();
    if let Some(d) = has_duplicate(&words) {
        return Err(format!("`{declared}` declares `{d}` twice"));
    }
    if let Some(missing) = first_undeclared(asked, declared) {
        return Err(format!(
            "the client asks for `{missing}`, which `{declared}` does not declare: an authorization server refuses a login that asks for it (or give --scope the scope the client really asks)"
        ));
    }
    Ok(format!("`{declared}` declares all of `{asked}`"))
}

fn strings(v: Option<&Value>) -> Option<Vec<&str>> {
    v?.as_array()?.iter().map(Value::as_str).collect()
}

fn has_duplicate<'a>(items: &[&'a str]) -> Option<&'a str> {
    items
        .iter()
        .enumerate()
        .find_map(|(i, w)| items[i + 1..].contains(w).then_some(*w))
}

/// The checks of the document's fields; returns its application type.
fn metadata_fields(
    doc: &Value,
    url: &Url,
    client_id: &str,
    asked: &str,
    net: &Net,
    report: &mut Report,
) -> &'static str {
    report.result(
        "metadata.client_id",
        match doc.get("client_id").and_then(Value::as_str) {
            Some(id) if id == client_id => Ok(format!("equals the URL ({id})")),
            Some(id) => Err(format!(
                "`{id}` is not the URL it is published at ({client_id})"
            )),
            None => Err("missing".into()),
        },
    );
    let app_type = match doc.get("application_type") {
        None => {
            report.ok("metadata.application_type", "web (by default)");
            "web"
        }
        Some(Value::String(s)) if s == "web" => {
            report.ok("metadata.application_type", "web");
            "web"
        }
        Some(Value::String(s)) if s == "native" => {
            report.ok("metadata.application_type", "native");
            "native"
        }
        Some(other) => {
            report.fail(
                "metadata.application_type",
                format!("{other}: expected `web` or `native`"),
            );
            "web"
        }
    };
    report.result(
        "metadata.dpop_bound_access_tokens",
        match doc.get("dpop_bound_access_tokens") {
            Some(Value::Bool(true)) => Ok("true".into()),
            Some(other) => Err(format!("{other}: atproto requires true")),
            None => Err("missing: atproto requires true".into()),
        },
    );
    grant_types(doc, report);
    report.result(
        "metadata.response_types",
        match strings(doc.get("response_types")) {
            Some(t) if t.contains(&"code") => Ok(t.join(" ")),
            Some(t) => Err(format!("`{}` lacks `code`", t.join(" "))),
            None => Err("missing (or not a list of strings)".into()),
        },
    );
    report.result(
        "metadata.scope",
        match doc.get("scope").and_then(Value::as_str) {
            Some(s) => scope_covers(s, asked),
            None => Err("missing".into()),
        },
    );
    report.result(
        "metadata.redirect_uris",
        redirect_uris(doc, url, app_type, net),
    );
    if let Some(uri) = doc.get("client_uri") {
        report.result(
            "metadata.client_uri",
            match uri.as_str().and_then(|s| Url::parse(s).ok()) {
                Some(u) if u.origin() == url.origin() => Ok(u.to_string()),
                Some(u) => Err(format!(
                    "{u} is not on the client id's origin ({})",
                    url.origin().ascii_serialization()
                )),
                None => Err(format!("{uri} is not a URL")),
            },
        );
    }
    app_type
}

fn grant_types(doc: &Value, report: &mut Report) {
    let Some(types) = strings(doc.get("grant_types")) else {
        report.fail("metadata.grant_types", "missing (or not a list of strings)");
        return;
    };
    let shown = types.join(" ");
    if let Some(d) = has_duplicate(&types) {
        report.fail("metadata.grant_types", format!("`{d}` is listed twice"));
    } else if let Some(bad) = types
        .iter()
        .find(|t| !matches!(**t, "authorization_code" | "refresh_token"))
    {
        report.fail(
            "metadata.grant_types",
            format!("`{bad}` is not a grant type atproto allows"),
        );
    } else if !types.contains(&"authorization_code") {
        report.fail(
            "metadata.grant_types",
            format!("`{shown}` lacks `authorization_code`"),
        );
    } else if !types.contains(&"refresh_token") {
        report.warn(
            "metadata.grant_types",
            format!(
                "`{shown}` lacks `refresh_token`: sessions end when the first access token expires"
            ),
        );
    } else {
        report.ok("metadata.grant_types", shown);
    }
}

/// The redirect URIs, by the rules of the reference authorization server and, for web
/// clients, on the client id's origin.
fn redirect_uris(doc: &Value, client: &Url, app_type: &str, net: &Net) -> Result<String, String> {
    let uris = strings(doc.get("redirect_uris"))
        .ok_or_else(|| "missing (or not a list of strings)".to_owned())?;
    if uris.is_empty() {
        return Err("empty: at least one is required".into());
    }
    let native = app_type == "native";
    for raw in &uris {
        let u = Url::parse(raw).map_err(|_| format!("`{raw}` is not a URL"))?;
        if !u.username().is_empty() || u.password().is_some() {
            return Err(format!("`{raw}` carries credentials"));
        }
        if u.fragment().is_some() {
            return Err(format!("`{raw}` has a fragment"));
        }
        let loopback_ip = matches!(u.host_str(), Some("127.0.0.1" | "[::1]"));
        let same_origin = u.origin() == client.origin();
        match u.scheme() {
            _ if u.host_str() == Some("localhost") && !(net.dev && same_origin) => {
                return Err(format!(
                    "`{raw}`: `localhost` is refused in redirect URIs (use 127.0.0.1)"
                ));
            }
            "http" if loopback_ip && native => {}
            "http" if net.dev && same_origin => {}
            "http" => {
                return Err(format!(
                    "`{raw}`: http redirect URIs are for loopback native clients only"
                ));
            }
            "https" => {
                if !same_origin && !native {
                    return Err(format!(
                        "`{raw}` is not on the client id's origin ({})",
                        client.origin().ascii_serialization()
                    ));
                }
                net.check(&u)?;
            }
            scheme if scheme.contains('.') && native => {
                let host = client.host_str().unwrap_or_default();
                let reversed: Vec<&str> = host.split('.').rev().collect();
                if scheme != reversed.join(".") {
                    return Err(format!(
                        "`{raw}`: a custom scheme must be the client id's host reversed (`{}`)",
                        reversed.join(".")
                    ));
                }
            }
            scheme => {
                return Err(format!("`{raw}`: the scheme `{scheme}` is not allowed"));
            }
        }
    }
    Ok(uris.join(" "))
}

/// `token_endpoint_auth_method` and, for `private_key_jwt`, the keys.
async fn auth_method(
    doc: &Value,
    app_type: &str,
    url: &Url,
    keyset: Option<&Keyset>,
    net: &Net,
    report: &mut Report,
) {
    let alg = doc.get("token_endpoint_auth_signing_alg");
    let (jwks, jwks_uri) = (doc.get("jwks"), doc.get("jwks_uri"));
    match doc
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
    {
        Some("none") => {
            report.result(
                "metadata.auth_method",
                if alg.is_some() {
                    Err("`none` must not name a token_endpoint_auth_signing_alg".into())
                } else {
                    Ok("none (a public client)".into())
                },
            );
            if keyset.is_some() {
                report.warn(
                    "jwks.client_keys",
                    "the client is public (auth method `none`): the --client-keys are not used",
                );
            }
        }
        Some("private_key_jwt") => {
            let problem = if app_type == "native" {
                Some("a native client must use `none`".to_owned())
            } else if jwks.is_some() && jwks_uri.is_some() {
                Some("`jwks` and `jwks_uri` are mutually exclusive".to_owned())
            } else if jwks.is_none() && jwks_uri.is_none() {
                Some("`private_key_jwt` needs `jwks` or `jwks_uri`".to_owned())
            } else {
                match alg.and_then(Value::as_str) {
                    Some("ES256") => None,
                    Some(other) => Some(format!(
                        "token_endpoint_auth_signing_alg `{other}`: atsession signs ES256"
                    )),
                    None => Some("token_endpoint_auth_signing_alg is missing (ES256)".to_owned()),
                }
            };
            match problem {
                Some(p) => report.fail("metadata.auth_method", p),
                None => report.ok("metadata.auth_method", "private_key_jwt, ES256"),
            }
            let published = match (jwks, jwks_uri) {
                (Some(inline), _) => Some(inline.clone()),
                (None, Some(uri)) => match uri.as_str().map(|s| url.join(s)) {
                    Some(Ok(u)) => match net.check(&u) {
                        Ok(()) => {
                            net.get_json(report, ("jwks.fetch", "jwks.content_type"), &u)
                                .await
                        }
                        Err(e) => {
                            report.fail("jwks.fetch", e);
                            None
                        }
                    },
                    _ => {
                        report.fail("jwks.fetch", format!("jwks_uri {uri} is not a URL"));
                        None
                    }
                },
                (None, None) => None,
            };
            if let Some(published) = published {
                check_keys(&published, keyset, report);
            }
        }
        Some(other) => report.fail(
            "metadata.auth_method",
            format!("`{other}`: atproto clients use `none` or `private_key_jwt`"),
        ),
        None => report.fail(
            "metadata.auth_method",
            "token_endpoint_auth_method is missing",
        ),
    }
}

/// The published public keys: well formed, and matching the private keys given.
fn check_keys(published: &Value, keyset: Option<&Keyset>, report: &mut Report) {
    let Some(items) = published.get("keys").and_then(Value::as_array) else {
        report.fail("jwks.keys", "no `keys` list");
        return;
    };
    let mut keys: Vec<Jwk> = Vec::new();
    let mut problem = None;
    for (i, item) in items.iter().enumerate() {
        let Ok(k) = serde_json::from_value::<Jwk>(item.clone()) else {
            problem.get_or_insert(format!("key {i} is not an EC public key (kty, crv, x, y)"));
            continue;
        };
        if k.d.is_some() || item.get("d").is_some() {
            problem = Some(format!(
                "key {i} publishes its private part (`d`): replace this key at once"
            ));
            break;
        }
        if k.kty != "EC" || k.crv != "P-256" {
            problem.get_or_insert(format!(
                "key {i} is {} {}, not an ES256 (EC P-256) key",
                k.kty, k.crv
            ));
        }
        match k.kid.as_deref() {
            None => {
                problem.get_or_insert(format!("key {i} has no kid"));
            }
            Some(kid) if keys.iter().any(|o| o.kid.as_deref() == Some(kid)) => {
                problem.get_or_insert(format!("two keys share the kid `{kid}`"));
            }
            Some(_) => {}
        }
        keys.push(k);
    }
    if keys.is_empty() && problem.is_none() {
        problem = Some("no key".into());
    }
    let kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
    match problem {
        Some(p) => report.fail("jwks.keys", p),
        None => report.ok(
            "jwks.keys",
            format!("{} public key(s): {}", keys.len(), kids.join(", ")),
        ),
    }
    let Some(keyset) = keyset else {
        report.warn(
            "jwks.client_keys",
            "no --client-keys given: the published keys were not compared with the private ones",
        );
        return;
    };
    let private = keyset.public_jwks().keys;
    let mut missing = Vec::new();
    let mut differ = Vec::new();
    for p in &private {
        let kid = p.kid.as_deref().unwrap_or_default();
        match keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
            None => missing.push(kid.to_owned()),
            Some(k) if k.thumbprint() != p.thumbprint() => differ.push(kid.to_owned()),
            Some(_) => {}
        }
    }
    let unknown: Vec<&str> = kids
        .iter()
        .copied()
        .filter(|kid| !private.iter().any(|p| p.kid.as_deref() == Some(kid)))
        .collect();
    if !differ.is_empty() {
        report.fail(
            "jwks.client_keys",
            format!(
                "the published key(s) {} are not the public part of the private key(s) of that kid: the server will refuse the client's assertions",
                differ.join(", ")
            ),
        );
    } else if !missing.is_empty() {
        report.fail(
            "jwks.client_keys",
            format!(
                "the private key(s) {} are not published: assertions signed with them are refused",
                missing.join(", ")
            ),
        );
    } else if !unknown.is_empty() {
        report.warn(
            "jwks.client_keys",
            format!(
                "every private key is published; {} published without a private key given (an old key?)",
                unknown.join(", ")
            ),
        );
    } else {
        report.ok(
            "jwks.client_keys",
            format!("the {} private key(s) given are published", private.len()),
        );
    }
}

/// The at-rest keys against the stored grants.
async fn at_rest(args: &DoctorArgs, report: &mut Report) {
    let db = match &args.db {
        Some(db) => db.clone(),
        None if Path::new(DEFAULT_DB).exists() => DEFAULT_DB.to_owned(),
        None => {
            report.warn(
                "at_rest.keys",
                format!(
                    "no database at {DEFAULT_DB} (give --db): the at-rest keys were not checked"
                ),
            );
            return;
        }
    };
    // A SQLite file is only read: no migration, nothing created.
    let store = match super::sessions::read_only_store(&db).await {
        Ok(s) => s,
        Err(e) => {
            report.fail(
                "at_rest.keys",
                format!("cannot open the store: {}", ErrorChain(&*e)),
            );
            return;
        }
    };
    let path = key_file_path(&db, args.key_file.as_deref());
    let (ring, source) = match std::env::var(KEY_ENV) {
        Ok(spec) => (
            AtRestKeyring::parse(&spec)
                .map(Some)
                .map_err(|e| ErrorChain(&e).to_string()),
            KEY_ENV.to_owned(),
        ),
        Err(_) => (
            read_keyring(&path).map_err(|e| ErrorChain(&*e).to_string()),
            path.display().to_string(),
        ),
    };
    let ring = match ring {
        Ok(Some(ring)) => ring,
        Ok(None) => {
            match key_usage(&store).await {
                Ok(u) if u.total() == 0 => report.ok(
                    "at_rest.keys",
                    format!(
                        "no key file at {source} and no grant stored (the first login makes one)"
                    ),
                ),
                Ok(u) => report.fail(
                    "at_rest.keys",
                    format!(
                        "no key file at {source}, and {} grant(s) are stored: restore the key file",
                        u.total()
                    ),
                ),
                Err(e) => report.fail("at_rest.keys", ErrorChain(&e).to_string()),
            }
            return;
        }
        Err(e) => {
            report.fail("at_rest.keys", format!("{source}: {e}"));
            return;
        }
    };
    match check_keyring(&store, &ring).await {
        Ok(usage) => report.ok(
            "at_rest.keys",
            format!(
                "{source} holds the key of every stored grant ({} grant(s); keys {})",
                usage.total(),
                ring.key_ids().join(", ")
            ),
        ),
        Err(e) => report.fail("at_rest.keys", format!("{source}: {}", ErrorChain(&e))),
    }
    match open_grants(&store, &ring).await {
        Ok(c) if c.failed == 0 => report.ok(
            "at_rest.grants",
            format!("the keys open all {} stored grant(s)", c.opened),
        ),
        Ok(c) => {
            let ids: Vec<String> = c.failed_ids.iter().map(ToString::to_string).collect();
            report.fail(
                "at_rest.grants",
                format!(
                    "{} of {} stored grant(s) do not open with {source} (a key swapped, or a corrupt seal): {}",
                    c.failed,
                    c.failed + c.opened,
                    ids.join(", ")
                ),
            );
        }
        Err(e) => report.fail("at_rest.grants", ErrorChain(&e).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn net(dev: bool) -> Net {
        let client = build_client(&HttpOptions::default()).unwrap();
        Net {
            via: None,
            origin: Url::parse("https://app.example").unwrap().origin(),
            direct: client.clone(),
            public: client,
            dev,
        }
    }

    fn redirects(uris: &[&str], app_type: &str, dev: bool) -> Result<String, String> {
        let client = Url::parse("https://app.example/client-metadata.json").unwrap();
        redirect_uris(
            &json!({ "redirect_uris": uris }),
            &client,
            app_type,
            &net(dev),
        )
    }

    #[test]
    fn redirect_uris_follow_the_authorization_servers_rules() {
        assert!(redirects(&["https://app.example/cb"], "web", false).is_ok());
        for bad in [
            "https://other.example/cb",   // another origin
            "http://app.example/cb",      // http outside loopback
            "http://127.0.0.1:8080/cb",   // loopback, but a web client
            "https://localhost/cb",       // localhost
            "com.example.app:/cb",        // a custom scheme for a web client
            "https://u:p@app.example/cb", // credentials
        ] {
            assert!(redirects(&[bad], "web", false).is_err(), "{bad}");
        }
        assert!(redirects(&[], "web", false).is_err());
        // Native clients: loopback IPs over http, and the reversed host as scheme.
        assert!(
            redirects(
                &["http://127.0.0.1/cb", "http://[::1]:9/cb"],
                "native",
                false
            )
            .is_ok()
        );
        assert!(redirects(&["example.app:/cb"], "native", false).is_ok());
        let e = redirects(&["com.evil:/cb"], "native", false).unwrap_err();
        assert!(e.contains("example.app"), "{e}");
        assert!(redirects(&["http://localhost:9/cb"], "native", false).is_err());
    }

    #[test]
    fn scopes_must_declare_what_is_asked() {
        assert!(scope_covers("atproto transition:generic", "atproto").is_ok());
        assert!(scope_covers("transition:generic", "transition:generic").is_err());
        assert!(scope_covers("atproto atproto", "atproto").is_err());
        assert!(scope_covers("atproto repo:app.bsky.*", "atproto").is_err());
        let e = scope_covers("atproto", "atproto repo:com.example.note").unwrap_err();
        assert!(e.contains("repo:com.example.note"), "{e}");
    }

    #[test]
    fn a_published_private_key_fails_without_showing_it() {
        let keyset = Keyset::new(vec![atsession::oauth::EcKey::generate().with_kid("k")]).unwrap();
        let private = serde_json::to_value(keyset.private_jwks()).unwrap();
        let d = private["keys"][0]["d"].as_str().unwrap().to_owned();
        let mut report = Report::default();
        check_keys(&private, Some(&keyset), &mut report);
        let keys = report
            .checks
            .iter()
            .find(|c| c.name == "jwks.keys")
            .unwrap();
        assert_eq!(keys.status, Status::Fail);
        assert!(keys.detail.contains("private part"), "{}", keys.detail);
        assert!(report.checks.iter().all(|c| !c.detail.contains(&d)));

        // No kid: refused.
        let mut public = serde_json::to_value(keyset.public_jwks()).unwrap();
        public["keys"][0].as_object_mut().unwrap().remove("kid");
        let mut report = Report::default();
        check_keys(&public, Some(&keyset), &mut report);
        assert_eq!(report.failed(), 2, "{report:?}"); // no kid, and `k` not published
    }
}
