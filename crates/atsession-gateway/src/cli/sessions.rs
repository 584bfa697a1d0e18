//! `atsession sessions …`: list, revoke and clean up app sessions in a store.

use std::path::{Path, PathBuf};

use atsession::app::{Session, SessionId, SessionManager};
use atsession::oauth::{
    ClientMetadata, GetterConfig, OAuthClient, OAuthClientConfig, SessionGetter,
};
use atsession::store::oauth::{GrantId, GrantStore};
use atsession::store::{AnyStore, SessionStore};
use atsession::syntax::Did;
use clap::{Args, Subcommand};

use super::CliError;

/// Which database, and how to print.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The store: a SQLite file, or a store URL (`sqlite://…`, `postgres://…`,
    /// `redis://…`, `rediss://…`).
    #[arg(
        long,
        default_value = "./atsession.db",
        env = "ATSESSION_DB",
        global = true
    )]
    db: String,
    /// Print JSON instead of a table.
    #[arg(
        long,
        global = true,
        env = "ATSESSION_JSON",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    json: bool,
}

/// Session administration.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List the live sessions of an account.
    List {
        /// The account's DID.
        #[arg(long, env = "ATSESSION_SESSIONS_DID")]
        did: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// End sessions: all of an account's, one by id, or every expired one.
    Revoke {
        /// End every session of this account (every device).
        #[arg(long, env = "ATSESSION_SESSIONS_DID", conflicts_with_all = ["id", "all_expired"], required_unless_present_any = ["id", "all_expired"])]
        did: Option<String>,
        /// End the session with this id (as `list` shows it). Ids may start with `-`.
        #[arg(
            long,
            env = "ATSESSION_SESSIONS_ID",
            conflicts_with = "all_expired",
            allow_hyphen_values = true
        )]
        id: Option<String>,
        /// End every expired session.
        #[arg(long, env = "ATSESSION_SESSIONS_ALL_EXPIRED", value_parser = clap::builder::BoolishValueParser::new())]
        all_expired: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete every expired session.
    Cleanup {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// A command-line mistake, found before touching the store.
#[derive(Debug, thiserror::Error)]
enum UsageError {
    #[error("`{0}` is not a valid DID (expected did:<method>:<id>)")]
    Did(String),
    #[error("`{0}` is not a session id (22 base64url characters, as `sessions list` shows)")]
    Id(String),
    #[error("no database at {0} (give the path with --db)")]
    NoDatabase(PathBuf),
}

/// Runs a `sessions` subcommand.
pub async fn run(cmd: SessionsCommand) -> Result<(), CliError> {
    match cmd {
        SessionsCommand::List { did, store } => {
            let did = parse_did(&did)?;
            let m = open_read_only(&store.db).await?;
            let sessions = m.list(&did).await?;
            if store.json {
                println!("{}", serde_json::to_string_pretty(&sessions)?);
            } else {
                print_table(&sessions);
            }
        }
        SessionsCommand::Revoke {
            did,
            id,
            all_expired,
            store,
        } => {
            let mut grants = Vec::new();
            let (what, count) = if let Some(did) = did {
                let did = parse_did(&did)?;
                let m = open(&store.db).await?;
                grants.extend(m.list(&did).await?.into_iter().filter_map(grant_of));
                ("sessions of the account", m.delete_all(&did).await?)
            } else if let Some(id) = id {
                let id = SessionId::parse(&id).ok_or(UsageError::Id(id))?;
                let m = open(&store.db).await?;
                if let Some(s) = m.store().load(&id).await? {
                    grants.extend(s.grant_id.clone());
                }
                ("session", u64::from(m.delete(&id).await?))
            } else {
                debug_assert!(all_expired);
                let m = open(&store.db).await?;
                let (count, signed_out) = end_expired(&store.db, &m).await?;
                report(
                    store.json,
                    ("revoked", "expired sessions"),
                    count,
                    signed_out,
                );
                return Ok(());
            };
            let signed_out = sign_out_grants(&store.db, &grants).await?;
            report(store.json, ("revoked", what), count, signed_out);
        }
        SessionsCommand::Cleanup { store } => {
            let m = open(&store.db).await?;
            let (count, signed_out) = end_expired(&store.db, &m).await?;
            report(
                store.json,
                ("deleted", "expired sessions"),
                count,
                signed_out,
            );
        }
    }
    Ok(())
}

/// Prints what ended: `{"<verb>": count, "grants_signed_out": n}` with `--json`, else
/// `<verb> <count> <what>` and a line for the grants signed out, if any.
fn report(json: bool, (verb, what): (&str, &str), count: u64, signed_out: u64) {
    if json {
        println!(
            "{}",
            serde_json::json!({ verb: count, "grants_signed_out": signed_out })
        );
    } else {
        println!("{verb} {count} {what}");
        if signed_out > 0 {
            println!("signed out {signed_out} OAuth grants");
        }
    }
}

/// Ends the expired sessions, a hundred at a time, as the gateway's cleanup does: the
/// grant of each that has one is signed out first (when the at-rest key is at hand), so
/// that none outlives its session; then the session is deleted. Returns how many sessions
/// were deleted and how many grants signed out.
async fn end_expired(db: &str, m: &SessionManager<AnyStore>) -> Result<(u64, u64), CliError> {
    const BATCH: usize = 100;
    let now = atsession::clock::Clock::now(&atsession::clock::SystemClock);
    let mut getter = None;
    let (mut deleted, mut signed_out, mut left) = (0, 0, 0);
    loop {
        let batch = m.store().expired_with_grants(now, BATCH).await?;
        if getter.is_none() && !batch.is_empty() {
            getter = Some(grant_getter(db).await?);
        }
        for (session, grant) in &batch {
            match getter.as_ref().and_then(Option::as_ref) {
                Some(g) => signed_out += sign_out_one(g, grant).await,
                None => left += 1,
            }
            deleted += u64::from(m.delete(session).await?);
        }
        if batch.len() < BATCH {
            break;
        }
    }
    if left > 0 {
        eprintln!("no at-rest key: the sessions' {left} OAuth grants are left");
    }
    Ok((deleted + m.delete_expired().await?, signed_out))
}

fn parse_did(s: &str) -> Result<Did, UsageError> {
    Did::new(s).map_err(|_| UsageError::Did(s.to_owned()))
}

/// Opens the store; a SQLite file must exist: an admin command never creates an empty one
/// by mistake.
async fn open(db: &str) -> Result<SessionManager<AnyStore>, CliError> {
    let sqlite_file = match db.split_once(':') {
        Some(("sqlite", rest)) => Some(rest.strip_prefix("//").unwrap_or(rest)),
        Some((scheme, _)) if scheme.len() > 1 && !scheme.contains(['/', '.']) => None,
        _ => Some(db),
    };
    if let Some(path) = sqlite_file
        && path != ":memory:"
        && !Path::new(path).exists()
    {
        return Err(UsageError::NoDatabase(PathBuf::from(path)).into());
    }
    Ok(SessionManager::new(atsession::store::open(db).await?))
}

fn grant_of(s: Session) -> Option<GrantId> {
    s.grant_id.clone()
}

/// Signs the revoked sessions' OAuth grants out through a session getter (tokens revoked at
/// their authorization server, grants deleted, `Deleted` events sent), when the store's
/// at-rest key is at hand (`ATSESSION_AT_REST_KEY` or the key file beside the store; an
/// admin command never creates one). Returns how many were signed out.
async fn sign_out_grants(db: &str, grants: &[GrantId]) -> Result<u64, CliError> {
    if grants.is_empty() {
        return Ok(0);
    }
    let Some(getter) = grant_getter(db).await? else {
        eprintln!(
            "no at-rest key: the sessions' {} OAuth grants are left",
            grants.len()
        );
        return Ok(0);
    };
    let mut signed_out = 0;
    for grant in grants {
        signed_out += sign_out_one(&getter, grant).await;
    }
    Ok(signed_out)
}

/// A session getter on the store, to sign grants out with; `None` when the store's at-rest
/// key is not at hand (`ATSESSION_AT_REST_KEY` or the key file beside the store; an admin
/// command never creates one).
async fn grant_getter(db: &str) -> Result<Option<SessionGetter<AnyStore>>, CliError> {
    use super::login::REDIRECT;
    use crate::setup::{KEY_ENV, SCOPE, load_keyring, sibling};
    if std::env::var(KEY_ENV).is_err() && !sibling(db, ".key").exists() {
        return Ok(None);
    }
    let store = atsession::store::open(db).await?;
    let config = OAuthClientConfig::new(
        ClientMetadata::loopback(&[REDIRECT], SCOPE)?,
        load_keyring(db, None)?,
    );
    let lock = store.lock();
    Ok(Some(SessionGetter::new(
        OAuthClient::new(config, store)?,
        GetterConfig::default().lock(lock),
    )))
}

/// Signs one grant out (tokens revoked at the authorization server, grant deleted,
/// `Deleted` event sent); 1 if it is gone afterwards and was there before.
async fn sign_out_one(getter: &SessionGetter<AnyStore>, grant: &GrantId) -> u64 {
    match getter.sign_out(grant).await {
        Ok(existed) => u64::from(existed),
        Err(e) => {
            // Revoking at the server failed (the grant is deleted all the same), or the
            // store did.
            eprintln!("grant {grant}: {e}");
            let store = getter.client().store();
            u64::from(matches!(
                GrantStore::load_grant(store, grant).await,
                Ok(None)
            ))
        }
    }
}

/// Opens a store to read it, without writing to it: no file, table or key created, no
/// migration; a store that is missing or not current is an error.
async fn open_read_only(db: &str) -> Result<SessionManager<AnyStore>, CliError> {
    Ok(SessionManager::new(read_only_store(db).await?))
}

/// The store `db`, opened to read it, without writing to it: no file, table or key
/// created, no migration; a store that is missing or not current is an error.
pub(crate) async fn read_only_store(db: &str) -> Result<AnyStore, CliError> {
    if let Some(file) = crate::setup::sqlite_file(db) {
        let path = file.to_string_lossy();
        let path = path.split('?').next().unwrap_or_default();
        if !Path::new(path).exists() {
            return Err(UsageError::NoDatabase(PathBuf::from(path)).into());
        }
    }
    Ok(atsession::store::open_read_only(db).await?)
}

fn print_table(sessions: &[Session]) {
    if sessions.is_empty() {
        println!("no live sessions");
        return;
    }
    let fmt = |t: time::OffsetDateTime| {
        t.format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default()
    };
    let rows: Vec<[String; 6]> = sessions
        .iter()
        .map(|s| {
            [
                s.id.to_string(),
                s.handle.to_string(),
                fmt(s.created_at),
                fmt(s.last_seen_at),
                fmt(s.expires_at()),
                s.grant_id
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
            ]
        })
        .collect();
    let header = ["ID", "HANDLE", "CREATED", "LAST SEEN", "EXPIRES", "GRANT"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[&str]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(&header);
    for row in &rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
}
