//! `wasmcell compile`: precompiled native code for `run --allow-precompiled`.

use crate::app::{WasmFlag, add_wasm_flags, advise_proposals, eprint_line, parse_wasm_flag, with_compile_notice};
use anyhow::{Context as _, Result};
use clap::Parser;
use std::path::PathBuf;
use wasmcell::policy::{ByteSize, Origin};
use wasmcell::{Engine, EngineConfig, Policy, Sandbox};

/// Precompile a module or component to native code for `wasmcell run --allow-precompiled`.
///
/// The code is compiled for the engine configuration the policy needs (fuel
/// metering, exactly its Wasm proposals) and this wasmcell's wasmtime
/// version; running it under a policy that needs another configuration (a
/// Wasm proposal more or fewer included) fails with a message saying so. `wasmcell run` caches compiled code on its own, so this is for
/// shipping code compiled ahead of time to machines you control.
#[derive(Parser, Debug)]
#[command(after_help = "Examples:
  wasmcell compile hello.wasm -o hello.cwasm
  wasmcell compile --policy policies/tight.toml app.wasm -o app.cwasm
  wasmcell compile --wasm exceptions cxx-tool.wasm
  wasmcell run --policy policies/tight.toml --allow-precompiled app.cwasm")]
pub struct CompileCommand {
    /// Policy the code will run under (its limits.fuel and wasm.proposals decide the configuration).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Compile fuel metering in, for running with --fuel (implied by a policy that sets limits.fuel).
    #[arg(long)]
    pub fuel: bool,

    /// Turn on Wasm proposal NAME, such as `exceptions` or `tail-call` (adds to wasm.proposals), or `unknown-imports-trap`. Repeatable.
    ///
    /// The code runs only under a policy with the same proposals.
    #[arg(long = "wasm", value_name = "NAME", value_parser = parse_wasm_flag)]
    pub wasm: Vec<WasmFlag>,

    /// Where to write the code [default: MODULE with the extension .cwasm].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// The module (wasm32-wasip1) or component (wasm32-wasip2) to compile.
    #[arg(value_name = "MODULE")]
    pub module: PathBuf,
}

impl CompileCommand {
    /// Compiles, links (so that a module WASI cannot run is refused now) and
    /// writes the code.
    ///
    /// # Errors
    ///
    /// Policy and load errors, and failing to write the output.
    pub fn execute(self) -> Result<u8> {
        let layers = || {
            let policy = match &self.policy {
                Some(path) => Policy::builder().file(path)?,
                None => Policy::builder(),
            };
            Ok::<_, wasmcell::PolicyError>(add_wasm_flags(policy, &self.wasm))
        };
        let mut policy = layers()?.build()?;
        if self.fuel && policy.limits().fuel.value.is_none() {
            policy = layers()?
                .with_origin(Origin::Flag("--fuel"), |b| b.fuel(u64::MAX))
                .build()?;
        }
        let engine = Engine::new(EngineConfig::for_policy(&policy))?;
        let sandbox = Sandbox::builder().engine(engine).policy(policy).build()?;
        let program = with_compile_notice(&self.module, || sandbox.load(&self.module)).map_err(advise_proposals)?;
        let code = program.precompile()?;
        let output = self.output.unwrap_or_else(|| self.module.with_extension("cwasm"));
        std::fs::write(&output, &code).with_context(|| format!("failed to write `{}`", output.display()))?;
        let config = sandbox.engine().config();
        eprint_line(format_args!(
            "wasmcell: compiled `{}` to `{}` ({}, fuel metering {}, stack {}, Wasm proposals {}); run it with --allow-precompiled",
            self.module.display(),
            output.display(),
            ByteSize(code.len() as u64),
            if config.fuel { "on" } else { "off" },
            ByteSize(config.stack),
            config.proposals
        ));
        Ok(0)
    }
}
