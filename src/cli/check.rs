//! `wasmcell check`: validate a policy and print what it grants.

use super::print_stdout;
use anyhow::{Context as _, Result};
use clap::Parser;
use std::path::PathBuf;
use wasmcell::Policy;

/// Validate a policy file and print what it grants, defaults included.
#[derive(Parser, Debug)]
#[command(after_help = "Example:\n  wasmcell check policies/read-only.toml")]
pub struct CheckCommand {
    /// The policy file.
    #[arg(value_name = "POLICY")]
    pub policy: PathBuf,
}

impl CheckCommand {
    /// Loads the policy and prints its description.
    ///
    /// # Errors
    ///
    /// The [`wasmcell::PolicyError`] when the policy is invalid.
    pub fn execute(self) -> Result<u8> {
        let policy = Policy::from_file(&self.policy)?;
        print_stdout(&wasmcell::policy::describe(&policy)).context("failed to write to stdout")?;
        Ok(0)
    }
}
