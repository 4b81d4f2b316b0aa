//! The command line as a whole: `Cli` and its subcommands, the mapping of
//! errors to exit codes, and the advice that names a flag. Each subcommand
//! lives in a module of its own beside this one.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;
use wasmcell::policy::{Origin, PolicyBuilder, Proposal, UnknownImports};
use wasmcell::{LoadError, LoadErrorKind, Status, sanitize};

use crate::check::CheckCommand;
use crate::compile::CompileCommand;
use crate::matrix::MatrixCommand;
use crate::run::RunCommand;
use crate::worker::WorkerCommand;

pub(crate) use crate::progress::with_compile_notice;

/// Run untrusted WebAssembly under a deny-by-default capability policy.
#[derive(Parser, Debug)]
#[command(name = "wasmcell", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a WebAssembly module or component under a policy.
    Run(RunCommand),
    /// Validate a policy file and print what it grants.
    Check(CheckCommand),
    /// Learn the smallest policy that lets a program do what it did, and prove it.
    Learn(crate::learn::LearnCommand),
    /// Run every module under every policy and check each cell against expectations.
    Matrix(MatrixCommand),
    /// Precompile a module or component to native code (a .cwasm file).
    Compile(CompileCommand),
    /// Make an Ed25519 key pair for signing modules (module.signed-by).
    Keygen(crate::sign::KeygenCommand),
    /// Sign a module or component, the signature embedded or detached.
    Sign(crate::sign::SignCommand),
    /// Check that a module or component carries a signature a public key verifies.
    Verify(crate::sign::VerifyCommand),
    /// Serve one job of the worker protocol on stdin and stdout (started by the matrix and the library's `Worker`).
    #[command(hide = true)]
    Worker(WorkerCommand),
}

impl Cli {
    /// Runs the chosen subcommand and returns the process exit code.
    ///
    /// # Errors
    ///
    /// Policy, load and sandbox errors; map them to an exit code with
    /// [`exit_code_for_error`].
    pub fn execute(self) -> Result<u8> {
        match self.command {
            Command::Run(c) => c.execute(),
            Command::Check(c) => c.execute(),
            Command::Learn(c) => c.execute(),
            Command::Matrix(c) => c.execute(),
            Command::Compile(c) => c.execute(),
            Command::Keygen(c) => c.execute(),
            Command::Sign(c) => c.execute(),
            Command::Verify(c) => c.execute(),
            Command::Worker(c) => c.execute(),
        }
    }
}

/// The exit code for an error that stopped `wasmcell` before or instead of a
/// guest run: 2 for a usage error (clap's), and otherwise the library's one
/// mapping, [`wasmcell::exit_code_for_error`], looking through the flag advice
/// around the error.
pub fn exit_code_for_error(err: &anyhow::Error) -> u8 {
    if let Some(advised) = err.chain().find_map(|e| e.downcast_ref::<Advised>()) {
        return exit_code_for_error(&advised.err);
    }
    if err.chain().any(|e| e.is::<clap::Error>() || e.is::<UsageError>()) {
        return wasmcell::EXIT_USAGE;
    }
    wasmcell::exit_code_for_error(err)
}

/// Prints an error that stopped `wasmcell` as one `error: ...` line on
/// stderr. The message may quote guest-chosen names (a module's imports,
/// say), so its control characters, newlines included, are escaped: no part
/// of it can colour the terminal or pass for a line of wasmcell's own.
pub fn print_error(err: &anyhow::Error) {
    let text = format!("{err:#}");
    eprint_line(format_args!("error: {}", sanitize(text.trim_end())));
}

/// A usage error found after parsing (a flag's value that only the policy
/// or the system can refuse), exit 2 like clap's own. Its text has no
/// `error:` of its own: [`print_error`] puts the one prefix in front.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

/// `message` as a [`UsageError`].
pub(crate) fn usage_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A library error with the command line's advice after it, such as
/// "...; raise it with --max-module-size": the library names policy keys
/// and API calls, and only the command line knows which flag sets them.
/// [`exit_code_for_error`] looks through it to the error it wraps.
#[derive(Debug)]
pub(crate) struct Advised {
    err: anyhow::Error,
    advice: Cow<'static, str>,
}

impl Advised {
    /// `err` followed by `advice`.
    pub(crate) fn wrap(err: impl Into<anyhow::Error>, advice: impl Into<Cow<'static, str>>) -> anyhow::Error {
        anyhow::Error::new(Advised {
            err: err.into(),
            advice: advice.into(),
        })
    }
}

/// A load error with the `--wasm` flags that allow what the module needs
/// after the library's `[wasm]` advice; other load errors as they are.
pub(crate) fn advise_proposals(err: LoadError) -> anyhow::Error {
    match err.kind() {
        LoadErrorKind::Proposal { needed, .. } => {
            let flags: Vec<_> = needed.iter().map(|p| format!("--wasm {p}")).collect();
            let advice = format!("or with {}", flags.join(" "));
            Advised::wrap(err, advice)
        }
        LoadErrorKind::UnknownImport { kind: "function", .. } => {
            Advised::wrap(err, format!("or with --wasm {UNKNOWN_IMPORTS_TRAP}"))
        }
        _ => err.into(),
    }
}

/// The `--wasm` value that sets `wasm.unknown-imports = "trap"`, spelled
/// as `wasmtime run -W` spells its own.
const UNKNOWN_IMPORTS_TRAP: &str = "unknown-imports-trap";

/// A `--wasm` value: what `wasmtime run -W` takes for the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WasmFlag {
    /// A proposal (adds to `wasm.proposals`).
    Proposal(Proposal),
    /// `unknown-imports-trap` (sets `wasm.unknown-imports = "trap"`).
    UnknownImportsTrap,
}

/// Parses a `--wasm` value: a proposal as `wasmtime run -W` names it, or
/// `unknown-imports-trap`.
pub(crate) fn parse_wasm_flag(name: &str) -> Result<WasmFlag, String> {
    if name == UNKNOWN_IMPORTS_TRAP {
        return Ok(WasmFlag::UnknownImportsTrap);
    }
    name.parse().map(WasmFlag::Proposal).map_err(|why: String| {
        if why.starts_with("unknown Wasm proposal") {
            format!("{why}; or {UNKNOWN_IMPORTS_TRAP}")
        } else {
            why
        }
    })
}

/// `--wasm` flags as one more policy layer, each marked with the flag.
pub(crate) fn add_wasm_flags(mut policy: PolicyBuilder, flags: &[WasmFlag]) -> PolicyBuilder {
    for flag in flags {
        policy = policy.with_origin(Origin::Flag("--wasm"), |b| match flag {
            WasmFlag::Proposal(p) => b.wasm_proposal(*p),
            WasmFlag::UnknownImportsTrap => b.unknown_imports(UnknownImports::Trap),
        });
    }
    policy
}

impl fmt::Display for Advised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}; {}", self.err, self.advice)
    }
}

/// The wrapped error is part of the message, so it is not also a `source`
/// (that would print it twice in `{:#}` chains).
impl std::error::Error for Advised {}

/// The flag that raises the limit a run ended at, for the line after the
/// library's description of the ending.
pub(crate) fn ending_advice(status: Status) -> Option<&'static str> {
    match status {
        Status::Timeout => Some("raise it with --timeout"),
        Status::FuelExhausted => Some("raise it with --fuel"),
        Status::MemoryLimit => Some("raise it with --memory"),
        Status::OutputLimit => Some("raise limits.output in the policy"),
        // Exited, Trap, Cancelled, WallStopped: no limit to raise.
        _ => None,
    }
}

/// Writes one line to stderr. A closed or failing stderr loses the line
/// instead of panicking as `eprintln!` would: wasmcell's own messages must
/// never decide how a run ends.
pub(crate) fn eprint_line(line: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Writes `text` to stdout and flushes it. A closed pipe (`EPIPE`) ends the
/// output quietly, as in `wasmcell check | head -1`; other errors are
/// returned.
///
/// # Errors
///
/// Any write error except a broken pipe.
pub(crate) fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    // See: #13
    #[test]
    fn a_needed_proposal_is_advised_as_flags() {
        let engine = wasmcell::Engine::new(wasmcell::EngineConfig::default()).unwrap();
        let wat = r#"(module (func $f (return_call $f)) (tag) (func (throw 0)) (func (export "_start")))"#;
        let err = engine.load_bytes("cxx.wasm", wat.as_bytes()).err().unwrap();
        let advised = advise_proposals(err);
        assert_eq!(
            format!("{advised:#}"),
            "cannot load `cxx.wasm`: uses Wasm exception handling and Wasm tail calls; allow them with [wasm] proposals = [\"exceptions\", \"tail-call\"]; or with --wasm exceptions --wasm tail-call"
        );
        assert_eq!(exit_code_for_error(&advised), wasmcell::EXIT_LOAD);
    }

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    /// Advice goes after the library's message, once, and the exit code is
    /// still the wrapped error's.
    #[test]
    fn advice_follows_the_message_and_keeps_the_exit_code() {
        let engine = wasmcell::Engine::new(wasmcell::EngineConfig::default()).unwrap();
        let err = engine.load_bytes("lib.wasm", b"(module)").err().unwrap();
        let message = err.to_string();
        let advised = Advised::wrap(err, "try --something");
        assert_eq!(format!("{advised:#}"), format!("{message}; try --something"));
        assert_eq!(exit_code_for_error(&advised), wasmcell::EXIT_LOAD);
        let wrapped = advised.context("while running");
        assert_eq!(exit_code_for_error(&wrapped), wasmcell::EXIT_LOAD);
        assert_eq!(
            exit_code_for_error(&anyhow::anyhow!("host trouble")),
            wasmcell::EXIT_SANDBOX
        );
    }
}
