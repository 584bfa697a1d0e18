//! `atsession call <nsid> [--param k=v]... [--body JSON | --input FILE] [--output FILE]`: an
//! XRPC call to the PDS of the account logged in with `atsession login`, made with its
//! stored OAuth grant (refreshed first when its tokens are stale, and once more if the PDS
//! says `invalid_token`).
//!
//! Without `--body` or `--input` the call is a query (`GET`, the params in the query
//! string). With `--body` it is a procedure (`POST`) with that JSON body; with `--input` a
//! procedure whose body is streamed from a file or standard input (`-`), never read into
//! memory, sent as `--content-type` (for `com.atproto.repo.uploadBlob`). A JSON answer is
//! printed pretty; any other answer, or any answer with `--output`, is streamed as is to
//! standard output (unless it is a terminal and the answer is binary) or the file (for
//! `com.atproto.sync.getBlob` and `getRepo`). Large
//! transfers show a progress line on standard error when it is a terminal. An error
//! answer prints the server's XRPC error name and message.
//!
//! The grant is the newest one of `--did`, or of the last account logged in with this
//! database. Refreshes take the lock of the store, so concurrent invocations share one.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use atsession::oauth::reqwest::header::CONTENT_TYPE;
use atsession::oauth::{
    GetterConfig, OAuthSession, PdsBody, PdsRequest, PdsResponse, SessionGetter,
};
use atsession::store::AnyStore;
use atsession::syntax::Did;
use atsession::syntax::is_nsid;
use clap::Args;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};

use super::CliError;
use super::login::{OAuthOptions, client};
use crate::setup::sibling;

/// The environment variable of `--param`: one `key=value` (a value may hold commas).
pub const PARAM_ENV: &str = "ATSESSION_CALL_PARAM";
/// The environment variable of `--body`.
pub const BODY_ENV: &str = "ATSESSION_CALL_BODY";
/// The environment variable of `--input`.
pub const INPUT_ENV: &str = "ATSESSION_CALL_INPUT";
/// The environment variable of `--content-type`.
pub const CONTENT_TYPE_ENV: &str = "ATSESSION_CALL_CONTENT_TYPE";
/// The environment variable of `--output`.
pub const OUTPUT_ENV: &str = "ATSESSION_CALL_OUTPUT";

/// Transfers at least this large show a progress line (on a terminal).
const PROGRESS_FROM: u64 = 1 << 20;

/// `atsession call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The method's NSID (`com.atproto.server.getSession`).
    pub nsid: String,
    /// A query parameter, `key=value`; repeat for more.
    #[arg(long = "param", value_name = "KEY=VALUE", env = PARAM_ENV)]
    pub params: Vec<String>,
    /// Make a procedure call (POST) with this JSON body.
    #[arg(long, value_name = "JSON", env = BODY_ENV, conflicts_with_all = ["input", "params"])]
    pub body: Option<String>,
    /// Make a procedure call (POST) whose body is streamed from this file (`-`: standard
    /// input), e.g. for `com.atproto.repo.uploadBlob`.
    #[arg(long, value_name = "FILE", env = INPUT_ENV)]
    pub input: Option<PathBuf>,
    /// The content type of `--input`.
    #[arg(
        long,
        value_name = "TYPE",
        env = CONTENT_TYPE_ENV,
        default_value = "application/octet-stream",
        requires = "input"
    )]
    pub content_type: String,
    /// Write the answer, as is, to this file (`-`: standard output) instead of printing
    /// JSON; for binary answers such as `com.atproto.sync.getBlob` and `getRepo`.
    #[arg(long, value_name = "FILE", env = OUTPUT_ENV)]
    pub output: Option<PathBuf>,
    /// The account (default: the last one logged in with this database).
    #[arg(long, env = super::login::DID_ENV)]
    pub did: Option<String>,
    /// Shared options.
    #[command(flatten)]
    pub oauth: OAuthOptions,
}

/// Runs `atsession call`. It never creates a database, and a failed call leaves no key
/// file it made.
pub async fn call(args: CallArgs) -> Result<(), CliError> {
    // The arguments first: a mistake in them is named before the store is looked for.
    let (params, json) = arguments(&args)?;
    let created = super::login::existing_database(&args.oauth, "no account is logged in")?;
    call_stored(&args, &params, json.as_ref())
        .await
        .map_err(|e| created.undo(e))
}

/// Query parameters: `(key, value)` in the order given.
type Params<'a> = Vec<(&'a str, &'a str)>;

/// The query parameters and the JSON body of `args`, checked: the NSID's syntax, each
/// `--param` a `KEY=VALUE`, `--body` JSON (clap refuses it beside `--param`).
fn arguments(args: &CallArgs) -> Result<(Params<'_>, Option<Value>), CliError> {
    if !is_nsid(&args.nsid) {
        return Err(format!("`{}` is not an NSID", args.nsid.escape_debug()).into());
    }
    let mut params = Vec::with_capacity(args.params.len());
    for p in &args.params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("--param `{p}` is not KEY=VALUE"))?;
        params.push((k, v));
    }
    let json: Option<Value> = match &args.body {
        Some(b) => Some(serde_json::from_str(b).map_err(|e| format!("--body is not JSON: {e}"))?),
        None => None,
    };
    Ok((params, json))
}

async fn call_stored(
    args: &CallArgs,
    params: &[(&str, &str)],
    json: Option<&Value>,
) -> Result<(), CliError> {
    let did = match &args.did {
        Some(d) => d.clone(),
        None => std::fs::read_to_string(sibling(&args.oauth.db, ".last-did"))
            .map_err(|_| "no --did given and no previous login recorded next to the database")?,
    };
    let did = Did::new(did.trim())?;
    let client = client(&args.oauth).await?;
    let grant =
        client.grants_of(&did).await?.pop().ok_or_else(|| {
            format!("no OAuth grant stored for {did}: run `atsession login` first")
        })?;
    let lock = client.store().lock();
    let getter = SessionGetter::new(client, GetterConfig::default().lock(lock));
    let session = getter.session(grant);

    let answer = match (json, &args.input) {
        (Some(body), _) => {
            let request = PdsRequest::procedure(&args.nsid)
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(serde_json::to_vec(body)?);
            session.send(request).await?
        }
        (None, Some(input)) => upload(&session, args, params, input).await?,
        (None, None) => {
            let request = PdsRequest::query(&args.nsid, params);
            session.send(request).await?
        }
    };
    let answer = answer.error_for_status().await?;
    let is_json = answer
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    match &args.output {
        None if is_json => {
            let body = answer.bytes().await?;
            let v: Value = if body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&body)?
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Some(path) if path != Path::new("-") => {
            let file = tokio::fs::File::create(path)
                .await
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            download(answer, file).await?;
        }
        None if std::io::stdout().is_terminal() && !is_text(&answer) => {
            return Err("the answer is binary: write it to a file with --output FILE".into());
        }
        _ => download(answer, tokio::io::stdout()).await?,
    }
    Ok(())
}

/// A procedure with the body streamed from `input`. A file (not standard input) is opened
/// again and sent once more if the PDS refused the first attempt in a way that can be
/// retried.
async fn upload(
    session: &OAuthSession<AnyStore>,
    args: &CallArgs,
    params: &[(&str, &str)],
    input: &Path,
) -> Result<PdsResponse, CliError> {
    let stdin = input == Path::new("-");
    let mut path = format!("/xrpc/{}", args.nsid);
    if !params.is_empty() {
        path.push('?');
        path.push_str(
            &atsession::oauth::url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish(),
        );
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let body = if stdin {
            let inner = tokio::io::stdin();
            PdsBody::reader(
                ProgressReader {
                    inner,
                    progress: Progress::new("sent", None),
                },
                None,
            )
        } else {
            let inner = tokio::fs::File::open(input)
                .await
                .map_err(|e| format!("cannot open {}: {e}", input.display()))?;
            let len = inner.metadata().await?.len();
            PdsBody::reader(
                ProgressReader {
                    inner,
                    progress: Progress::new("sent", Some(len)),
                },
                Some(len),
            )
        };
        let request = PdsRequest::new(atsession::oauth::reqwest::Method::POST, path.clone())
            .header("content-type", &args.content_type)
            .header("accept", "application/json")
            .body(body);
        match session.send(request).await {
            Err(e) if attempt == 1 && !stdin && e.is_retryable() => continue,
            other => return Ok(other?),
        }
    }
}

/// Whether the answer is text (fit for a terminal).
fn is_text(answer: &PdsResponse) -> bool {
    answer
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/"))
}

/// Streams the answer's body to `out`, with a progress line for large ones.
async fn download(
    mut answer: PdsResponse,
    mut out: impl AsyncWrite + Unpin,
) -> Result<(), CliError> {
    let mut progress = Progress::new("received", answer.content_length());
    while let Some(chunk) = answer.chunk().await? {
        out.write_all(&chunk).await?;
        progress.add(chunk.len() as u64);
    }
    out.flush().await?;
    drop(progress);
    Ok(())
}

/// A reader that reports its progress on standard error while it is read.
struct ProgressReader<R> {
    inner: R,
    progress: Progress,
}

impl<R: AsyncRead + Unpin> AsyncRead for ProgressReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.progress.add(read as u64);
        polled
    }
}

/// A progress line: `sent 12.0 MiB of 50.0 MiB (24%), 40.1 MiB/s`, redrawn at most five
/// times a second, only on a terminal and for transfers of 1 MiB or more.
struct Progress {
    verb: &'static str,
    total: Option<u64>,
    done: u64,
    started: Instant,
    drawn: Option<Instant>,
    terminal: bool,
}

impl Progress {
    fn new(verb: &'static str, total: Option<u64>) -> Self {
        Self {
            verb,
            total,
            done: 0,
            started: Instant::now(),
            drawn: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if !self.terminal || self.done < PROGRESS_FROM {
            return;
        }
        if self
            .drawn
            .is_some_and(|d| d.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.drawn = Some(Instant::now());
        self.draw();
    }

    fn draw(&self) {
        const MIB: f64 = 1024.0 * 1024.0;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / MIB / secs;
        let done = self.done as f64 / MIB;
        let line = match self.total {
            Some(t) if t > 0 => format!(
                "{} {done:.1} MiB of {:.1} MiB ({}%), {rate:.1} MiB/s",
                self.verb,
                t as f64 / MIB,
                self.done.saturating_mul(100) / t
            ),
            _ => format!("{} {done:.1} MiB, {rate:.1} MiB/s", self.verb),
        };
        eprint!("\r\x1b[2K{line}");
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // The line is finished when the transfer is (its reader or loop is dropped).
        if self.drawn.is_some() {
            self.draw();
            eprintln!();
        }
    }
}
