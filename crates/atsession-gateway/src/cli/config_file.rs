//! `atsession serve --config FILE`: the serve options from a TOML file. Each key is an
//! option's long name (`listen = "0.0.0.0:8080"`, `allow-origin = ["https://app.example"]`,
//! `dev = true`); a flag on the command line wins over its environment variable, which
//! wins over the file. An unknown key is an error that names it.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// The largest config file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Why the config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("cannot read the config file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than 1 MiB.
    #[error("the config file {0} is larger than 1 MiB")]
    TooLarge(String),
    /// Not TOML.
    #[error("the config file {path} is not valid TOML")]
    Toml {
        /// The file.
        path: String,
        /// The parse error (line and column).
        #[source]
        source: toml::de::Error,
    },
    /// A key names no option of `atsession serve`.
    #[error("the config file {path} sets `{key}`, which is not an option of `atsession serve`")]
    UnknownKey {
        /// The file.
        path: String,
        /// The key.
        key: String,
    },
    /// A value of a kind no option takes (a table, a date, a nested array).
    #[error("the config file {path} gives `{key}` a value of the wrong kind")]
    BadValue {
        /// The file.
        path: String,
        /// The key.
        key: String,
    },
}

/// Reads a config file within the size limit.
fn read_table(path: &Path) -> Result<toml::Table, ConfigFileError> {
    use std::io::Read as _;
    let shown = path.display().to_string();
    let read = |source| ConfigFileError::Read {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigFileError::TooLarge(shown));
    }
    text.parse::<toml::Table>()
        .map_err(|source| ConfigFileError::Toml {
            path: shown,
            source,
        })
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The arguments the file adds for `target` (`serve`, or `doctor` reading serve's file):
/// `--key=value` for every key whose option was given neither on the command line nor in
/// the environment. Every key must be an option of `serve`; for `doctor`, the keys it has
/// no option for are skipped, and `public-url` is its URL argument.
fn file_args(
    serve: &Command,
    target: &Command,
    given: &ArgMatches,
    path: &Path,
) -> Result<Vec<OsString>, ConfigFileError> {
    let table = read_table(path)?;
    let shown = path.display().to_string();
    let mut out = Vec::new();
    for (key, value) in &table {
        if !serve
            .get_arguments()
            .any(|a| a.get_long() == Some(key.as_str()) && key != "config")
        {
            return Err(ConfigFileError::UnknownKey {
                path: shown.clone(),
                key: key.clone(),
            });
        }
        let positional = target.get_name() == "doctor" && key == "public-url";
        let Some(arg) = target.get_arguments().find(|a| {
            if positional {
                a.get_id() == "url"
            } else {
                a.get_long() == Some(key.as_str())
            }
        }) else {
            continue;
        };
        let id = arg.get_id().as_str();
        if matches!(
            given.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        if positional {
            let v = scalar(value).ok_or_else(|| ConfigFileError::BadValue {
                path: shown.clone(),
                key: key.clone(),
            })?;
            out.push(OsString::from(v));
            continue;
        }
        let bad = || ConfigFileError::BadValue {
            path: shown.clone(),
            key: key.clone(),
        };
        let is_flag = !arg.get_action().takes_values();
        match value {
            toml::Value::Boolean(b) if is_flag => {
                if *b {
                    out.push(OsString::from(format!("--{key}")));
                }
            }
            toml::Value::Array(items) => {
                for item in items {
                    let v = scalar(item).ok_or_else(bad)?;
                    out.push(OsString::from(format!("--{key}={v}")));
                }
            }
            other => {
                let v = scalar(other).ok_or_else(bad)?;
                out.push(OsString::from(format!("--{key}={v}")));
            }
        }
    }
    Ok(out)
}

/// Parses the command line; for `serve --config FILE` (and `doctor --config FILE`, which
/// reads the same file), adds the file's options and parses again. A clap error (bad flag,
/// `--help`) is returned as such, for `clap::Error::exit`.
pub fn parse(command: Command, argv: Vec<OsString>) -> Result<ArgMatches, ParseError> {
    let matches = command.clone().try_get_matches_from(&argv)?;
    let Some((name @ ("serve" | "doctor"), sub)) = matches.subcommand() else {
        return Ok(matches);
    };
    let Some(path) = sub.get_one::<std::path::PathBuf>("config") else {
        return Ok(matches);
    };
    let find = |n: &str| {
        command
            .find_subcommand(n)
            .expect("the serve and doctor subcommands exist")
            .clone()
    };
    let extra = file_args(&find("serve"), &find(name), sub, path)?;
    if extra.is_empty() {
        return Ok(matches);
    }
    // The subcommand is the last one, so its options may follow everything given.
    let mut argv = argv;
    argv.extend(extra);
    Ok(command.try_get_matches_from(argv)?)
}

/// A command line or config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The command line (or a value from the file) is refused by the parser.
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// The config file.
    #[error(transparent)]
    File(#[from] ConfigFileError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn command() -> Command {
        Command::new("atsession").subcommand(
            Command::new("serve")
                .arg(
                    Arg::new("config")
                        .long("config")
                        .value_parser(clap::value_parser!(std::path::PathBuf)),
                )
                .arg(
                    Arg::new("listen")
                        .long("listen")
                        .default_value("127.0.0.1:8080"),
                )
                .arg(Arg::new("db").long("db").default_value("./atsession.db"))
                .arg(Arg::new("dev").long("dev").action(ArgAction::SetTrue))
                .arg(
                    Arg::new("allow-origin")
                        .long("allow-origin")
                        .action(ArgAction::Append),
                )
                .arg(
                    Arg::new("header-timeout")
                        .long("header-timeout")
                        .value_parser(clap::value_parser!(u64)),
                ),
        )
    }

    fn serve_of(m: &ArgMatches) -> &ArgMatches {
        m.subcommand_matches("serve").unwrap()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn argv(rest: &[&str]) -> Vec<OsString> {
        ["atsession", "serve"]
            .iter()
            .chain(rest)
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn flags_over_environment_over_file() {
        let f = file(
            "listen = \"0.0.0.0:9000\"\ndb = \"from-file.db\"\ndev = true\n\
             allow-origin = [\"https://a.example\", \"https://b.example\"]\nheader-timeout = 7\n",
        );
        let path = f.path().to_str().unwrap();
        let m = parse(
            command(),
            argv(&["--config", path, "--listen", "127.0.0.1:1"]),
        )
        .unwrap();
        let s = serve_of(&m);
        assert_eq!(
            s.get_one::<String>("listen").unwrap(),
            "127.0.0.1:1",
            "the flag wins"
        );
        // (The environment's precedence over the file is tested on the binary, in
        // tests/serve.rs: a test cannot set a variable without `unsafe`.)
        assert_eq!(
            s.get_one::<String>("db").unwrap(),
            "from-file.db",
            "the file over the default"
        );
        assert!(s.get_flag("dev"));
        assert_eq!(s.get_one::<u64>("header-timeout"), Some(&7));
        let origins: Vec<&String> = s.get_many("allow-origin").unwrap().collect();
        assert_eq!(origins, ["https://a.example", "https://b.example"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let f = file("listne = \"x\"\n");
        let e = parse(command(), argv(&["--config", f.path().to_str().unwrap()])).unwrap_err();
        assert!(e.to_string().contains("`listne`"), "{e}");
        let f = file("listen = { a = 1 }\n");
        let e = parse(command(), argv(&["--config", f.path().to_str().unwrap()])).unwrap_err();
        assert!(
            matches!(e, ParseError::File(ConfigFileError::BadValue { .. })),
            "{e}"
        );
        let f = file("header-timeout = \"soon\"\n");
        let e = parse(command(), argv(&["--config", f.path().to_str().unwrap()])).unwrap_err();
        assert!(matches!(e, ParseError::Clap(_)), "{e}");
        let f = file("listen = \n");
        let e = parse(command(), argv(&["--config", f.path().to_str().unwrap()])).unwrap_err();
        assert!(
            matches!(e, ParseError::File(ConfigFileError::Toml { .. })),
            "{e}"
        );
        let e = parse(
            command(),
            argv(&["--config", "/nonexistent/atsession.toml"]),
        )
        .unwrap_err();
        assert!(
            matches!(e, ParseError::File(ConfigFileError::Read { .. })),
            "{e}"
        );
    }

    #[test]
    fn endless_files_are_not_read_to_the_end() {
        let e = parse(command(), argv(&["--config", "/dev/zero"])).unwrap_err();
        assert!(
            matches!(e, ParseError::File(ConfigFileError::TooLarge(_))),
            "{e}"
        );
    }
}
