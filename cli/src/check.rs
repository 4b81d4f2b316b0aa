//! `wasmcell check`: validate a policy and print what it grants.

use crate::app::{WasmFlag, add_wasm_flags, parse_wasm_flag, print_stdout};
use anyhow::{Context as _, Result};
use clap::Parser;
use std::path::PathBuf;
use wasmcell::policy::WallMode;
use wasmcell::wall::{WallPlan, WallReport};
use wasmcell::{CacheInGrant, DiskCache, Policy};

/// Validate a policy file and print what it grants, defaults included.
#[derive(Parser, Debug)]
#[command(
    after_help = "Examples:\n  wasmcell check policies/read-only.toml\n  wasmcell check --wasm exceptions policies/deny-all.toml"
)]
pub struct CheckCommand {
    /// Also turn on Wasm proposal NAME (adds to wasm.proposals), or `unknown-imports-trap`, as `run --wasm` would. Repeatable.
    #[arg(long = "wasm", value_name = "NAME", value_parser = parse_wasm_flag)]
    pub wasm: Vec<WasmFlag>,

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
        let policy = add_wasm_flags(Policy::builder().file(&self.policy)?, &self.wasm).build()?;
        let mut text = wasmcell::policy::summarize(&policy);
        // What `run` would warn of with the default cache folder.
        if let Some(why) = DiskCache::default_dir().and_then(|dir| CacheInGrant::find(&policy, &dir)) {
            text.push_str(&format!(
                "compile cache:\n  {why}; `wasmcell run` under this policy compiles every guest afresh \
                 (choose a folder outside the grants with --cache-dir)\n"
            ));
        }
        text.push_str(&describe_wall(&policy));
        print_stdout(&text).context("failed to write to stdout")?;
        Ok(0)
    }
}

/// The second wall this policy would get on this machine, layer by layer,
/// with a warning when it is off or `require` would refuse to run.
fn describe_wall(policy: &Policy) -> String {
    let plan = WallPlan::for_policy(policy);
    let mode = &policy.wall().mode;
    let mut out = format!(
        "second wall ({}: {}):\n",
        mode.origin.cite("wall.mode"),
        mode.value.name()
    );
    let report: WallReport = wasmcell::wall::probe(&plan);
    out.push_str(&report.describe());
    if mode.value != WallMode::Off {
        out.push_str(&plan.describe());
    }
    match mode.value {
        WallMode::Off => out.push_str(
            "  warning: the wall is off; a bug in the runtime a guest reaches meets no kernel wall (use `auto` or `require`)\n",
        ),
        WallMode::Require if !report.complete() => out.push_str(
            "  warning: `wasmcell run` refuses to start under this policy on this machine: a layer `require` needs is missing\n",
        ),
        _ => {}
    }
    out
}
