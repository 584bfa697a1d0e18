//! `atsession`: the atsession gateway server and its admin commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;
mod server;

/// Session management for AT Protocol applications.
#[derive(Debug, Parser)]
#[command(name = "atsession", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
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
    /// Make an XRPC call to the logged-in account's PDS and print the JSON answer.
    Call(cli::call::CallArgs),
    /// Check, rotate and retire the at-rest keys that seal the stored OAuth grants.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Run the gateway server.
    Serve(server::ServeArgs),
    /// Seal JSON from stdin into an Iron `Fe26.2` string (password from $ATSESSION_SEAL_PASSWORD).
    Seal(cli::seal::SealArgs),
    /// Open an Iron `Fe26.2` seal from stdin and print its JSON.
    Unseal(cli::seal::UnsealArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ATSESSION_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
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
