//! `atsession call <nsid> [--param k=v]... [--json BODY]`: an XRPC call to the PDS of the
//! account logged in with `atsession login`, made with its stored OAuth grant (refreshed
//! first when its tokens are stale, and once more if the PDS says `invalid_token`). Prints
//! the JSON answer.
//!
//! Without `--json` the call is a query (`GET`, the params in the query string); with
//! `--json` it is a procedure (`POST`, the body as given, which must be JSON). The grant is
//! the newest one of `--did`, or of the last account logged in with this database.
//! Refreshes take the lock of the store, so concurrent invocations share one.

use atsession::oauth::{GetterConfig, SessionGetter};
use atsession::syntax::Did;
use clap::Args;
use serde_json::Value;

use super::CliError;
use super::login::{OAuthOptions, client, sibling};

/// `atsession call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The method's NSID (`com.atproto.server.getSession`).
    pub nsid: String,
    /// A query parameter, `key=value`; repeat for more.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Make a procedure call (POST) with this JSON body.
    #[arg(long, value_name = "BODY")]
    pub json: Option<String>,
    /// The account (default: the last one logged in with this database).
    #[arg(long)]
    pub did: Option<String>,
    /// Shared options.
    #[command(flatten)]
    pub oauth: OAuthOptions,
}

/// Runs `atsession call`.
pub async fn call(args: CallArgs) -> Result<(), CliError> {
    let mut params = Vec::with_capacity(args.params.len());
    for p in &args.params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("--param `{p}` is not KEY=VALUE"))?;
        params.push((k, v));
    }
    let body: Option<Value> = match &args.json {
        Some(b) => Some(serde_json::from_str(b).map_err(|e| format!("--json is not JSON: {e}"))?),
        None => None,
    };
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
    let answer: Value = match body {
        Some(b) => {
            if !params.is_empty() {
                return Err("--param and --json cannot be combined".into());
            }
            session.xrpc_procedure(&args.nsid, &b).await?
        }
        None => session.xrpc_query(&args.nsid, &params).await?,
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
