//! `atsession sessions …`: list, revoke and clean up app sessions in a store.

use std::path::{Path, PathBuf};

use atsession::app::{Session, SessionId, SessionManager};
use atsession::store::sqlite::SqliteStore;
use atsession::syntax::Did;
use clap::{Args, Subcommand};

use super::CliError;

/// Which database, and how to print.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The SQLite database: a file path or a `sqlite://` URL.
    #[arg(
        long,
        default_value = "./atsession.db",
        env = "ATSESSION_DB",
        global = true
    )]
    db: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// Session administration.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List the live sessions of an account.
    List {
        /// The account's DID.
        #[arg(long)]
        did: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// End sessions: all of an account's, one by id, or every expired one.
    Revoke {
        /// End every session of this account (every device).
        #[arg(long, conflicts_with_all = ["id", "all_expired"], required_unless_present_any = ["id", "all_expired"])]
        did: Option<String>,
        /// End the session with this id (as `list` shows it). Ids may start with `-`.
        #[arg(long, conflicts_with = "all_expired", allow_hyphen_values = true)]
        id: Option<String>,
        /// End every expired session.
        #[arg(long)]
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
            let (what, count) = if let Some(did) = did {
                let did = parse_did(&did)?;
                let m = open(&store.db).await?;
                ("sessions of the account", m.delete_all(&did).await?)
            } else if let Some(id) = id {
                let id = SessionId::parse(&id).ok_or(UsageError::Id(id))?;
                let m = open(&store.db).await?;
                ("session", u64::from(m.delete(&id).await?))
            } else {
                debug_assert!(all_expired);
                let m = open(&store.db).await?;
                ("expired sessions", m.delete_expired().await?)
            };
            report(store.json, "revoked", what, count);
        }
        SessionsCommand::Cleanup { store } => {
            let m = open(&store.db).await?;
            let count = m.delete_expired().await?;
            report(store.json, "deleted", "expired sessions", count);
        }
    }
    Ok(())
}

fn parse_did(s: &str) -> Result<Did, UsageError> {
    Did::new(s).map_err(|_| UsageError::Did(s.to_owned()))
}

/// Opens an existing database: an admin command never creates an empty one by mistake.
async fn open(db: &str) -> Result<SessionManager<SqliteStore>, CliError> {
    let path = db
        .strip_prefix("sqlite://")
        .or_else(|| db.strip_prefix("sqlite:"))
        .unwrap_or(db);
    if path != ":memory:" && !Path::new(path).exists() {
        return Err(UsageError::NoDatabase(PathBuf::from(path)).into());
    }
    Ok(SessionManager::new(SqliteStore::connect(db).await?))
}

/// Opens an existing database without writing to it (no migration, no file created).
async fn open_read_only(db: &str) -> Result<SessionManager<SqliteStore>, CliError> {
    let path = db
        .strip_prefix("sqlite://")
        .or_else(|| db.strip_prefix("sqlite:"))
        .unwrap_or(db);
    let path = path.split('?').next().unwrap_or_default();
    if !Path::new(path).exists() {
        return Err(UsageError::NoDatabase(PathBuf::from(path)).into());
    }
    Ok(SessionManager::new(
        SqliteStore::open_read_only(path).await?,
    ))
}

fn report(json: bool, verb: &str, what: &str, count: u64) {
    if json {
        println!("{}", serde_json::json!({ verb: count }));
    } else {
        println!("{verb} {count} {what}");
    }
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
                s.grant_id.clone().unwrap_or_else(|| "-".to_owned()),
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
