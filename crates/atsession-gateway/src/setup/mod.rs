//! What `serve` and the commands share: where a store's key file and other files are, the
//! at-rest keyring, the identity resolver's configuration, and the defaults they agree on.

pub mod small_file;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::Url;
use atsession::oauth::{HandleResolver, IdentityConfig};

use small_file::FileError;

/// What a command returns on failure: printed with its chain of causes.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;

/// The environment variable holding the at-rest key.
pub const KEY_ENV: &str = "ATSESSION_AT_REST_KEY";
/// The scope the command line asks for by default.
pub const SCOPE: &str = "atproto transition:generic";
/// The environment variable for `--scope`.
pub const SCOPE_ENV: &str = "ATSESSION_SCOPE";
/// A file beside the store: `<file><suffix>` for a SQLite file, `./atsession<suffix>` for
/// a network store.
pub(crate) fn sibling(db: &str, suffix: &str) -> PathBuf {
    let file = match db.split_once("://") {
        Some(("sqlite", path)) => path,
        Some(_) => "atsession",
        None if db.starts_with("sqlite:") || db.starts_with("memory:") => "atsession",
        None => db,
    };
    PathBuf::from(format!("{file}{suffix}"))
}

/// The SQLite file a `--db` value names, if it names one (a bare path or `sqlite://…`).
pub(crate) fn sqlite_file(db: &str) -> Option<PathBuf> {
    match db.split_once("://") {
        Some(("sqlite", path)) => Some(PathBuf::from(path)),
        Some(_) => None,
        None if db.starts_with("sqlite:") || db.starts_with("memory:") => None,
        None => Some(PathBuf::from(db)),
    }
}

/// The at-rest keyring of the store `db`: from `ATSESSION_AT_REST_KEY`, the key file
/// (default `<db>.key` beside a SQLite file, `./atsession.key` for a network store), or a
/// new key file created with mode 0600.
pub fn load_keyring(db: &str, key_file: Option<&Path>) -> Result<AtRestKeyring, CliError> {
    if let Ok(spec) = std::env::var(KEY_ENV) {
        return Ok(AtRestKeyring::parse(&spec)?);
    }
    let path = key_file_path(db, key_file);
    match small_file::read_secret(&path) {
        Ok(text) => Ok(AtRestKeyring::parse(&text)?),
        Err(small_file::FileError::Io { source: e, .. })
            if e.kind() == std::io::ErrorKind::NotFound =>
        {
            let key = AtRestKey::generate("cli-1")?;
            let mut f = create_private(&path)?;
            f.write_all(key.to_spec().as_bytes())?;
            f.write_all(b"\n")?;
            eprintln!("created the at-rest key file {}", path.display());
            Ok(AtRestKeyring::new(key))
        }
        Err(e) => Err(e.into()),
    }
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path)
}

/// The key file of the store `db`: `key_file`, or `<db>.key` beside a SQLite file
/// (`./atsession.key` for a network store).
pub fn key_file_path(db: &str, key_file: Option<&Path>) -> PathBuf {
    key_file.map_or_else(|| sibling(db, ".key"), Path::to_path_buf)
}

/// The keyring in `path`, or `None` if there is no such file. Refuses a file readable by
/// group or others.
pub fn read_keyring(path: &Path) -> Result<Option<AtRestKeyring>, CliError> {
    match small_file::read_secret(path) {
        Ok(text) => Ok(Some(AtRestKeyring::parse(&text)?)),
        Err(FileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Identity resolution through `plc_url`, and handles through DNS and HTTPS or, when
/// given, an XRPC `resolveHandle` service.
pub fn identity_config(plc_url: Url, handle_resolver: Option<Url>) -> IdentityConfig {
    IdentityConfig {
        plc_url,
        handle_resolver: handle_resolver.map_or(HandleResolver::Standard, HandleResolver::Xrpc),
        ..IdentityConfig::default()
    }
}
