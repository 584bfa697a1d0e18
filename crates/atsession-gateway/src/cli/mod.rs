//! The subcommands, one module each.

pub mod call;
pub mod config_file;
pub mod doctor;
pub mod keys;
pub mod login;
pub mod seal;
pub mod sessions;
pub mod small_file;

/// What a subcommand returns on failure: printed with its chain of causes.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;
