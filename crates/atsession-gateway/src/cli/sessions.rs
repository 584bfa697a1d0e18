//! `atsession sessions …`

use clap::Subcommand;

use super::CliError;

/// Session administration.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List the sessions of a DID.
    List,
}

/// Runs a `sessions` subcommand.
pub async fn run(cmd: SessionsCommand) -> Result<(), CliError> {
    match cmd {
        SessionsCommand::List => Err("sessions list is being written".into()),
    }
}
