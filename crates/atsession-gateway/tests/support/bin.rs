//! This build's `atsession` binary, run by the tests as a person would run it, configured
//! by each test's arguments and variables alone.
//!
//! Every option has an environment variable, so a developer's exported `ATSESSION_DB`
//! (say) would otherwise point a test at their own store. None of the caller's
//! `ATSESSION_*` variables reaches the binary but the log filter (`ATSESSION_LOG`), kept
//! for debugging a test; a test sets the variables it means to test after this.
#![allow(dead_code)]

use std::ffi::OsString;
use std::process::Command;

/// The path of this build's binary.
pub const ATSESSION: &str = env!("CARGO_BIN_EXE_atsession");

/// A command that runs this build's `atsession`, with none of the caller's `ATSESSION_*`
/// variables but `ATSESSION_LOG`. For a `tokio::process::Command`, convert it
/// (`tokio::process::Command::from(atsession())`).
pub fn atsession() -> Command {
    let mut cmd = Command::new(ATSESSION);
    for var in inherited() {
        cmd.env_remove(var);
    }
    cmd
}

/// The caller's `ATSESSION_*` variables that a spawned binary must not see: all but
/// `ATSESSION_LOG`.
pub fn inherited() -> impl Iterator<Item = OsString> {
    std::env::vars_os().map(|(name, _)| name).filter(|name| {
        let name = name.to_string_lossy();
        name.starts_with("ATSESSION_") && name != "ATSESSION_LOG"
    })
}
