//! `atsession`: the atsession gateway server and its admin commands.

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};

mod cli;
mod server;
mod setup;

/// mimalloc instead of the C library's allocator. Under load glibc's `malloc` and `free`
/// took about a tenth of the gateway's CPU samples (`perf record`); with mimalloc
/// `GET /session` at 64 connections costs 13.1–14.2 µs of gateway CPU per request instead
/// of 16.1–16.3 µs (`gateway_load`, the earlier build run through
/// `ATSESSION_GATEWAY_UNDER`). Built without its transparent huge pages (`no_thp`): with
/// them, a streamed 50 MB download peaked 25 MB higher (`cli_call_stream`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Session management for AT Protocol applications.
#[derive(Debug, Parser)]
#[command(name = "atsession", version, about)]
struct Args {
    /// Log lines as plain text or as one JSON object per line. The filter is
    /// `ATSESSION_LOG` (e.g. `info`, `atsession=debug`; default `warn`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ATSESSION_LOG_FORMAT")]
    log_format: LogFormat,
    /// Show what happened on standard error (the grant used, a refresh, a DPoP nonce
    /// retried), never a token or key: the log filter `warn,atsession=debug` unless
    /// `ATSESSION_LOG` is set.
    #[arg(long, short = 'v', global = true, env = "ATSESSION_VERBOSE", value_parser = clap::builder::BoolishValueParser::new())]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines, coloured only on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, revoke and clean up app sessions in a store.
    #[command(subcommand)]
    Sessions(cli::sessions::SessionsCommand),
    /// Log a terminal user in with OAuth (loopback client) and store the grant.
    Login(cli::login::LoginArgs),
    /// Revoke and delete the stored OAuth grants of an account.
    Logout(cli::login::LogoutArgs),
    /// Make an XRPC call to the logged-in account's PDS: print the JSON answer, or stream a binary one.
    Call(cli::call::CallArgs),
    /// Check, rotate and retire the at-rest keys that seal the stored OAuth grants.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Check a deployment as an authorization server sees it: the client metadata, the
    /// published keys against the private ones, and the at-rest keys against the stored
    /// grants.
    Doctor(cli::doctor::DoctorArgs),
    /// Run the gateway server.
    Serve(server::ServeArgs),
    /// Seal JSON from stdin into an Iron `Fe26.2` string (password from $ATSESSION_SEAL_PASSWORD).
    Seal(cli::seal::SealArgs),
    /// Open an Iron `Fe26.2` seal from stdin and print its JSON.
    Unseal(cli::seal::UnsealArgs),
}

fn init_logging(format: LogFormat, verbose: bool) {
    use std::io::IsTerminal as _;
    let fallback = if verbose {
        "warn,atsession=debug"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATSESSION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(fallback));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour only on a terminal, and never with NO_COLOR set (as `doctor`).
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// The command line. `--help` names each option's variable but never shows its value,
/// which may be a secret (a store URL with its password).
fn command() -> clap::Command {
    fn hide_values(cmd: clap::Command) -> clap::Command {
        cmd.mut_args(|a| a.hide_env_values(true))
            .mut_subcommands(hide_values)
    }
    hide_values(Args::command())
}

/// An unknown `--json` after `call`: the request body is `--body` (it once was `--json`),
/// and `call` prints JSON answers without being asked. Clap's own tip (pass it after `--`)
/// would lead nowhere.
fn with_hint(mut e: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let unknown_json = e.kind() == ErrorKind::UnknownArgument
        && matches!(
            e.get(ContextKind::InvalidArg),
            Some(ContextValue::String(a)) if a == "--json" || a.starts_with("--json=")
        );
    let in_call = matches!(
        e.get(ContextKind::Usage),
        Some(ContextValue::StyledStr(u)) if u.to_string().contains("atsession call ")
    );
    if unknown_json && in_call {
        e.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![
                "a procedure call's JSON body is `--body JSON`; `call` always prints JSON answers"
                    .into(),
            ]),
        );
    }
    e
}

fn parse_args() -> Args {
    let parsed = cli::config_file::parse(command(), std::env::args_os().collect())
        .map_err(|e| match e {
            cli::config_file::ParseError::Clap(c) => with_hint(c),
            cli::config_file::ParseError::File(f) => {
                command().error(clap::error::ErrorKind::InvalidValue, f)
            }
        })
        .and_then(|m| Args::from_arg_matches(&m));
    match parsed {
        Ok(args) => args,
        Err(e) => e.exit(),
    }
}

fn main() -> ExitCode {
    let args = parse_args();
    init_logging(args.log_format, args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Command::Sessions(cmd) => cli::sessions::run(cmd).await,
            Command::Login(args) => cli::login::login(args).await,
            Command::Logout(args) => cli::login::logout(args).await,
            Command::Call(args) => cli::call::call(args).await,
            Command::Keys(cmd) => cli::keys::run(cmd).await,
            Command::Doctor(args) => cli::doctor::doctor(args).await,
            Command::Serve(args) => server::run(args).await,
            Command::Seal(args) => cli::seal::seal(args),
            Command::Unseal(args) => cli::seal::unseal(args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let e: &dyn std::error::Error = &*e;
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every option of every command, with the command's path (`atsession sessions list`).
    fn options() -> Vec<(String, clap::Arg)> {
        fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
            let path = format!("{path} {}", cmd.get_name()).trim().to_owned();
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !arg.is_positional() && !builtin {
                    out.push((path.clone(), arg.clone()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, out);
            }
        }
        let mut out = Vec::new();
        walk(&super::command(), "", &mut out);
        out
    }

    #[test]
    fn every_option_has_an_environment_variable() {
        let missing: Vec<String> = options()
            .iter()
            .filter(|(_, arg)| arg.get_env().is_none())
            .map(|(path, arg)| format!("{path} --{}", arg.get_long().unwrap_or("?")))
            .collect();
        assert!(
            missing.is_empty(),
            "options without a variable: {missing:#?}"
        );
    }

    #[test]
    fn help_never_shows_a_variable_value() {
        let shown: Vec<String> = options()
            .iter()
            .filter(|(_, arg)| !arg.is_hide_env_values_set())
            .map(|(path, arg)| format!("{path} --{}", arg.get_long().unwrap_or("?")))
            .collect();
        assert!(shown.is_empty(), "values shown by --help: {shown:#?}");
    }

    #[test]
    fn an_environment_variable_means_one_thing() {
        // The same variable on two options is allowed only where both are the same
        // option (same long name), as `--db` is in every command.
        let mut seen = std::collections::HashMap::new();
        for (path, arg) in options() {
            let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            let (env, long) = (env.to_string_lossy().into_owned(), long.to_owned());
            if let Some((other_path, other_long)) =
                seen.insert(env.clone(), (path.clone(), long.clone()))
            {
                assert_eq!(
                    other_long, long,
                    "{env} is `{other_path} --{other_long}` and `{path} --{long}`"
                );
            }
        }
    }

    #[test]
    fn the_readme_names_every_option_and_variable() {
        let readme = include_str!("../../../README.md");
        let mut missing = Vec::new();
        for (path, arg) in options() {
            let long = format!("--{}", arg.get_long().unwrap_or("?"));
            if !readme.contains(&format!("`{long}")) {
                missing.push(format!("{path} {long}"));
            }
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                if !readme.contains(env.as_ref()) {
                    missing.push(format!("{path} {long}: {env}"));
                }
            }
        }
        missing.dedup();
        assert!(missing.is_empty(), "not in README.md: {missing:#?}");
    }
}
