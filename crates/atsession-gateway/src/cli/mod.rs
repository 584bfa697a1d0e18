//! The subcommands, one module each.

pub mod call;
pub mod config_file;
pub mod doctor;
pub mod keys;
pub mod login;
pub mod seal;
pub mod sessions;

pub use crate::setup::CliError;
