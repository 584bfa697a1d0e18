//! `atsession keys …`: the at-rest key file that seals a database's OAuth grants.
//!
//! The key file holds one key per line (`kid:base64url(32 bytes)`), the first seals and the
//! others only open; it must be readable by its owner only. `keys rotate` puts a new key
//! first and re-seals every grant under it while the old keys still open them; `keys retire`
//! then drops an old key, refusing while a grant still needs it. A rotation that was
//! interrupted (killed, a store error) is finished by running `keys rotate` again: it goes
//! on re-sealing under the key it added, and adds no other.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::key_rotation::{ResealOptions, check_keyring, key_usage, reseal_grants};
use atsession::store::AnyStore;
use clap::{Args, Subcommand};

use super::CliError;
use crate::setup::{KEY_ENV, key_file_path, read_keyring};

/// Test hook: exit at once (as if killed) after re-sealing this many grants.
const ABORT_AFTER_ENV: &str = "ATSESSION_TEST_ROTATE_ABORT_AFTER";

/// The database and its key file.
#[derive(Debug, Args)]
pub struct KeyFileArgs {
    /// The store holding the OAuth grants: a SQLite file, or a store URL (`sqlite://…`,
    /// `postgres://…`, `redis://…`, `rediss://…`).
    #[arg(long, default_value = "./atsession.db", env = "ATSESSION_DB")]
    db: String,
    /// The at-rest key file (default: `<db>.key`).
    #[arg(long, env = "ATSESSION_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Print one JSON object instead of sentences.
    #[arg(long, env = "ATSESSION_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    json: bool,
}

/// At-rest key administration.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show the keys of the key file and how many grants each seals; fails if a grant's key
    /// is missing.
    Status(KeyFileArgs),
    /// Add a new sealing key and re-seal every grant under it (or finish an interrupted
    /// rotation).
    Rotate(KeyFileArgs),
    /// Remove an old key from the key file, once no grant is sealed under it.
    Retire {
        /// The key id (as `keys status` shows it).
        id: String,
        #[command(flatten)]
        files: KeyFileArgs,
    },
}

/// Why a key command refused.
#[derive(Debug, thiserror::Error)]
enum KeysError {
    #[error("the at-rest key is set in {KEY_ENV}; the key commands work on a key file: unset it")]
    FromEnvironment,
    #[error(
        "no key file at {0} (a key file is made by the first login or `serve`; give another with --key-file)"
    )]
    NoKeyFile(PathBuf),
    #[error("no database at {0} (give the path with --db)")]
    NoDatabase(PathBuf),
    #[error("{0} is the sealing key: rotate to a new key first (`atsession keys rotate`)")]
    RetireCurrent(String),
    #[error("the key file holds no key `{0}`")]
    UnknownKey(String),
    #[error(
        "{count} grant(s) are still sealed under `{id}`: run `atsession keys rotate` to re-seal them"
    )]
    StillUsed { id: String, count: u64 },
    #[error(
        "the key file {path} is missing, and the store holds {grants} grant(s) sealed under at-rest key(s) {ids}: restore the key file (a new key cannot open them; logout could not revoke them)"
    )]
    LostKeyFile {
        path: PathBuf,
        grants: u64,
        ids: String,
    },
    #[error("the key file {path} does not fit the store")]
    Mismatch {
        path: PathBuf,
        #[source]
        source: atsession::oauth::key_rotation::KeyRotationError,
    },
}

/// Writes `ring` to `path` atomically (a private temporary file renamed over it).
fn write_keyring(path: &Path, ring: &AtRestKeyring) -> Result<(), CliError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&tmp)?;
    f.write_all(b"# atsession at-rest keys: the first seals, the others only open.\n")?;
    f.write_all(ring.to_specs().as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Refuses to go on when the store holds grants that the keys given cannot open: a lost or
/// swapped key file must not be silently replaced. `serve` calls this before it starts.
pub async fn check_store_keys(
    db: &str,
    key_file: Option<&Path>,
    store: &AnyStore,
) -> Result<(), CliError> {
    let path = key_file_path(db, key_file);
    let ring = match std::env::var(KEY_ENV) {
        Ok(spec) => Some(AtRestKeyring::parse(&spec)?),
        Err(_) => read_keyring(&path)?,
    };
    match ring {
        Some(ring) => {
            check_keyring(store, &ring)
                .await
                .map_err(|source| KeysError::Mismatch { path, source })?;
        }
        None => {
            let usage = key_usage(store).await?;
            if usage.total() > 0 {
                let ids: Vec<&str> = usage.by_key.keys().map(String::as_str).collect();
                return Err(KeysError::LostKeyFile {
                    path,
                    grants: usage.total(),
                    ids: ids.join(", "),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// Runs a `keys` subcommand.
pub async fn run(cmd: KeysCommand) -> Result<(), CliError> {
    if std::env::var_os(KEY_ENV).is_some() {
        return Err(KeysError::FromEnvironment.into());
    }
    match cmd {
        KeysCommand::Status(files) => status(&files).await,
        KeysCommand::Rotate(files) => rotate(&files).await,
        KeysCommand::Retire { id, files } => retire(&id, &files).await,
    }
}

/// How a key command opens the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// It only reads the store: opened without writing (no migration).
    Read,
    /// It writes (re-seals grants).
    Write,
}

/// The store and the key file's keyring; both must exist.
async fn open(
    files: &KeyFileArgs,
    access: Access,
) -> Result<(AnyStore, PathBuf, AtRestKeyring), CliError> {
    let path = key_file_path(&files.db, files.key_file.as_deref());
    let ring = read_keyring(&path)?.ok_or_else(|| KeysError::NoKeyFile(path.clone()))?;
    if let Some(file) = crate::setup::sqlite_file(&files.db)
        && !file.exists()
    {
        return Err(KeysError::NoDatabase(file).into());
    }
    let store = match access {
        Access::Read => atsession::store::open_read_only(&files.db).await?,
        Access::Write => atsession::store::open(&files.db).await?,
    };
    Ok((store, path, ring))
}

/// Prints `value` as one JSON object on standard output.
fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn status(files: &KeyFileArgs) -> Result<(), CliError> {
    let (store, path, ring) = open(files, Access::Read).await?;
    let usage = key_usage(&store).await?;
    let checked = check_keyring(&store, &ring).await;
    let missing = usage.missing(&ring);
    if files.json {
        let mut keys: Vec<serde_json::Value> = ring
            .key_ids()
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                let role = if i == 0 { "seals" } else { "opens" };
                serde_json::json!({ "id": id, "role": role, "grants": usage.grants_under(id) })
            })
            .collect();
        keys.extend(missing.iter().map(|id| {
            serde_json::json!({ "id": id, "role": "missing", "grants": usage.grants_under(id) })
        }));
        print_json(&serde_json::json!({
            "ok": checked.is_ok(),
            "key_file": path,
            "keys": keys,
            "malformed_grants": usage.malformed,
        }))?;
    } else {
        println!("key file {}", path.display());
        for (i, id) in ring.key_ids().into_iter().enumerate() {
            let role = if i == 0 { "seals" } else { "opens" };
            println!("  {id:<24} {role:<6} {} grant(s)", usage.grants_under(id));
        }
        for id in &missing {
            println!("  {id:<24} MISSING {} grant(s)", usage.grants_under(id));
        }
        if usage.malformed > 0 {
            println!("  {} grant(s) with a malformed seal", usage.malformed);
        }
    }
    checked.map_err(|source| KeysError::Mismatch { path, source })?;
    Ok(())
}

async fn rotate(files: &KeyFileArgs) -> Result<(), CliError> {
    let (store, path, ring) = open(files, Access::Write).await?;
    let usage = check_keyring(&store, &ring)
        .await
        .map_err(|source| KeysError::Mismatch {
            path: path.clone(),
            source,
        })?;
    let current = ring.current().id().to_owned();
    let left = usage.total() - usage.grants_under(&current);
    let resuming = usage.total() > 0 && left > 0;
    let ring = if resuming {
        if !files.json {
            println!("resuming: {left} grant(s) not yet sealed under `{current}`");
        }
        ring
    } else {
        let id = new_key_id(&ring);
        let rotated = ring.rotated(AtRestKey::generate(id.as_str())?);
        write_keyring(&path, &rotated)?;
        if !files.json {
            println!("new sealing key `{id}` written to {}", path.display());
        }
        rotated
    };
    let mut options = ResealOptions::default().lock(store.lock());
    let abort_after = std::env::var(ABORT_AFTER_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = abort_after {
        options = options.limit(n);
    }
    let done = reseal_grants(&store, &ring, options).await?;
    if done.stopped && abort_after.is_some() {
        // As if the process were killed here: no cleanup, no report.
        eprintln!(
            "stopping after {} grant(s) ({ABORT_AFTER_ENV})",
            done.resealed
        );
        std::process::exit(3);
    }
    let old: Vec<&str> = ring.key_ids().into_iter().skip(1).collect();
    if files.json {
        return print_json(&serde_json::json!({
            "key_file": path,
            "sealing_key": ring.current().id(),
            "new_key": !resuming,
            "resealed": done.resealed,
            "already_sealed": done.current,
            "signed_out_meanwhile": done.gone,
            "old_keys": old,
        }));
    }
    println!(
        "re-sealed {} grant(s) under `{}` ({} already were, {} signed out meanwhile)",
        done.resealed,
        ring.current().id(),
        done.current,
        done.gone
    );
    if !old.is_empty() {
        println!(
            "old keys no grant needs any more: {} (remove each with `atsession keys retire <id>`)",
            old.join(", ")
        );
    }
    Ok(())
}

async fn retire(id: &str, files: &KeyFileArgs) -> Result<(), CliError> {
    let (store, path, ring) = open(files, Access::Read).await?;
    if ring.current().id() == id {
        return Err(KeysError::RetireCurrent(id.to_owned()).into());
    }
    let Some(smaller) = ring.without_old_key(id) else {
        return Err(KeysError::UnknownKey(id.to_owned()).into());
    };
    let count = key_usage(&store).await?.grants_under(id);
    if count > 0 {
        return Err(KeysError::StillUsed {
            id: id.to_owned(),
            count,
        }
        .into());
    }
    write_keyring(&path, &smaller)?;
    if files.json {
        return print_json(&serde_json::json!({ "retired": id, "key_file": path }));
    }
    println!("retired `{id}` from {}", path.display());
    Ok(())
}

/// `k<unix seconds>`, made unique within `ring`.
fn new_key_id(ring: &AtRestKeyring) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut id = format!("k{secs}");
    let mut n = 1;
    while ring.holds(&id) {
        n += 1;
        id = format!("k{secs}-{n}");
    }
    id
}
