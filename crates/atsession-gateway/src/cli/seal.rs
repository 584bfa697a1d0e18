//! `atsession seal` and `atsession unseal`: make and open Iron `Fe26.2` seals by hand, e.g. to
//! inspect a session cookie. The password comes from `ATSESSION_SEAL_PASSWORD` or a file, never
//! from the command line (where other users could read it in the process list).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use atsession::seal::{IRON_SESSION_SUFFIX, Iron, Passwords};
use atsession::secret::SecretString;
use clap::Args;

use super::CliError;

/// The environment variable holding the password.
pub const PASSWORD_ENV: &str = "ATSESSION_SEAL_PASSWORD";
/// The most stdin is read.
const MAX_INPUT: u64 = 1 << 20;

/// Where the password comes from.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Read the password from this file (its first line) instead of $ATSESSION_SEAL_PASSWORD.
    #[arg(long, value_name = "PATH", env = "ATSESSION_SEAL_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// The password's id. `seal`: the id the seal carries (empty by default). `unseal`: open only
    /// seals with this id (empty id = `default`); without it the password opens any id.
    #[arg(long, value_name = "ID", env = "ATSESSION_SEAL_PASSWORD_ID")]
    password_id: Option<String>,
}

/// `atsession seal`: JSON on stdin, the seal on stdout.
#[derive(Debug, Args)]
pub struct SealArgs {
    #[command(flatten)]
    password: PasswordArgs,
    /// How long the seal is valid: seconds, or a number with s, m, h or d. Default: forever.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, env = "ATSESSION_SEAL_TTL")]
    ttl: Option<Duration>,
    /// Append iron-session's `~2` suffix (as iron-session writes cookies and sealData tokens).
    #[arg(long, env = "ATSESSION_SEAL_IRON_SESSION", value_parser = clap::builder::BoolishValueParser::new())]
    iron_session: bool,
}

/// `atsession unseal`: a seal on stdin, its JSON on stdout.
#[derive(Debug, Args)]
pub struct UnsealArgs {
    #[command(flatten)]
    password: PasswordArgs,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 3600, 90m, 12h or 7d"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(|| format!("{s:?} is not a duration like 3600, 90m, 12h or 7d"))?;
    Ok(Duration::from_secs(secs))
}

/// Why the password could not be had. Never contains the password.
#[derive(Debug, thiserror::Error)]
enum PasswordError {
    #[error("no password: set {PASSWORD_ENV} or pass --password-file")]
    Missing,
    #[error("cannot read the password file")]
    File(#[source] crate::setup::small_file::FileError),
    #[error("{PASSWORD_ENV} is not valid UTF-8")]
    NotUtf8,
}

fn password(args: &PasswordArgs) -> Result<SecretString, PasswordError> {
    let raw = if let Some(path) = &args.password_file {
        let text = crate::setup::small_file::read(path).map_err(PasswordError::File)?;
        SecretString::new(text.lines().next().unwrap_or_default())
    } else {
        match std::env::var(PASSWORD_ENV) {
            Ok(v) => SecretString::new(v),
            Err(std::env::VarError::NotPresent) => return Err(PasswordError::Missing),
            Err(std::env::VarError::NotUnicode(_)) => return Err(PasswordError::NotUtf8),
        }
    };
    if raw.expose().is_empty() {
        return Err(PasswordError::Missing);
    }
    Ok(raw)
}

fn passwords(args: &PasswordArgs) -> Result<Passwords, CliError> {
    let secret = password(args)?;
    Ok(match args.password_id.as_deref() {
        None | Some("") => Passwords::single(secret)?,
        Some(id) => Passwords::new([(id, secret)])?,
    })
}

fn read_stdin() -> Result<String, CliError> {
    let mut input = String::new();
    std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_string(&mut input)
        .map_err(|e| -> CliError { format!("cannot read stdin: {e}").into() })?;
    if input.len() as u64 > MAX_INPUT {
        return Err(format!("stdin is longer than {MAX_INPUT} bytes").into());
    }
    Ok(input)
}

fn print(line: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Runs `atsession seal`.
pub fn seal(args: SealArgs) -> Result<(), CliError> {
    let passwords = passwords(&args.password)?;
    let input = read_stdin()?;
    let value: serde_json::Value = serde_json::from_str(&input).map_err(|e| -> CliError {
        format!(
            "stdin is not JSON (line {}, column {})",
            e.line(),
            e.column()
        )
        .into()
    })?;
    let iron = Iron::new(passwords).with_ttl(args.ttl.unwrap_or(Duration::ZERO));
    let mut sealed = iron.seal(&value)?;
    if args.iron_session {
        sealed.push_str(IRON_SESSION_SUFFIX);
    }
    print(&sealed)
}

/// Runs `atsession unseal`.
pub fn unseal(args: UnsealArgs) -> Result<(), CliError> {
    let passwords = passwords(&args.password)?;
    let input = read_stdin()?;
    let input = input.trim();
    // Accept a cookie pasted whole (`sid=Fe26.2*...`) and iron-session's `~2` suffix.
    let sealed = input
        .find("Fe26.")
        .map_or(input, |i| &input[i..])
        .split(['~', ';'])
        .next()
        .unwrap_or_default();
    let iron = Iron::new(passwords);
    let value: serde_json::Value = iron.unseal(sealed)?;
    print(&serde_json::to_string(&value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_ttl("7w").is_err());
        assert!(parse_ttl("").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
    }
}
