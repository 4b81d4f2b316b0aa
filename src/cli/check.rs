//! `wasmcell check`: validate a policy and print what it grants.

use super::{add_proposals, parse_proposal, print_stdout};
use anyhow::{Context as _, Result};
use clap::Parser;
use std::path::PathBuf;
use wasmcell::policy::Proposal;
use wasmcell::{CacheInGrant, DiskCache, Policy};

/// Validate a policy file and print what it grants, defaults included.
#[derive(Parser, Debug)]
#[command(
    after_help = "Examples:\n  wasmcell check policies/read-only.toml\n  wasmcell check --wasm exceptions policies/deny-all.toml"
)]
pub struct CheckCommand {
    /// Also turn on Wasm proposal NAME, as `run --wasm` would (adds to wasm.proposals). Repeatable.
    #[arg(long = "wasm", value_name = "NAME", value_parser = parse_proposal)]
    pub wasm: Vec<Proposal>,

    /// The policy file.
    #[arg(value_name = "POLICY")]
    pub policy: PathBuf,
}

impl CheckCommand {
    /// Loads the policy and prints its description, and a warning when its
    /// read-write grants reach the default compile cache folder.
    ///
    /// # Errors
    ///
    /// The [`wasmcell::PolicyError`] when the policy is invalid.
    pub fn execute(self) -> Result<u8> {
        let policy = add_proposals(Policy::builder().file(&self.policy)?, &self.wasm).build()?;
        let mut text = wasmcell::policy::describe(&policy);
        // What `run` would warn of with the default cache folder.
        if let Some(why) = DiskCache::default_dir().and_then(|dir| CacheInGrant::find(&policy, &dir)) {
            text.push_str(&format!(
                "compile cache:\n  {why}; `wasmcell run` under this policy compiles every guest afresh \
                 (choose a folder outside the grants with --cache-dir)\n"
            ));
        }
        print_stdout(&text).context("failed to write to stdout")?;
        Ok(0)
    }
}
