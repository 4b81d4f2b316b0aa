//! Running a program in a confined child process: the second wall for hosts
//! that run many sandboxes and cannot confine their own process.
//!
//! [`confine_current_process`](crate::wall::confine_current_process) confines
//! the whole calling process, for good: right for `wasmcell run`, wrong for a
//! host that runs one guest after another, or many at once. Such a host hands
//! each run to a [`Worker`]: a child process that receives the job over a
//! pipe, loads the compiled code, confines itself for the job's policy, runs
//! the guest and sends back the same [`Outcome`] an in-process run returns,
//! with [`Outcome::wall`] saying what took effect around it.
//!
//! The `wasmcell` binary serves the worker protocol as a hidden subcommand
//! (`wasmcell worker`; [`Worker::wasmcell`]). A host that would rather keep
//! the worker inside its own binary starts itself in that role (an argument,
//! an environment variable: its choice) and calls [`serve`] there, then exits
//! with the code it returns; [`Worker::new`] names the binary and
//! [`Worker::arg`] the role.
//!
//! # Example
//!
//! ```no_run
//! use wasmcell::worker::{CompiledProgram, Job, PolicySource, Worker};
//! use wasmcell::{Engine, EngineConfig, Policy, Status};
//!
//! let policy = PolicySource::File("policies/read-only.toml".into());
//! let engine = Engine::new(EngineConfig::for_policy(&policy.resolve()?))?;
//! // Compiled once here; every job hands the same native code to its child.
//! let program = CompiledProgram::new(&engine, &engine.load("fs_read.wasm", 64 << 20)?)?;
//! let worker = Worker::wasmcell("/usr/local/bin/wasmcell");
//! let outcome = worker.run(&Job::new(policy, program).args(["/data/hello.txt"]))?;
//! assert_eq!(outcome.status, Status::Exited(0));
//! assert!(outcome.wall.is_some(), "the child says which layers took effect");
//! # Ok::<(), anyhow::Error>(())
//! ```

mod parent;
mod protocol;
mod serve;

pub use serve::serve;

use crate::engine::{Engine, EngineConfig, Program};
use crate::instance::Instance;
use crate::outcome::Outcome;
use crate::policy::{Policy, PolicyError};
use crate::sandbox::Sandbox;
use anyhow::{Result, bail};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// How to start a worker process: an executable that serves the worker
/// protocol ([`serve`]), and its arguments.
///
/// Defaults:
/// - no arguments ([`Worker::wasmcell`] adds `worker`);
/// - the child has 60 seconds to load the code and confine itself
///   ([`Worker::setup_timeout`]);
/// - it is killed 2 seconds after its guest's `limits.timeout` has passed
///   without an outcome ([`Worker::grace`]).
///
/// The child inherits this process's environment and working directory (a
/// relative policy path means the same file to both); the guest's
/// environment is the policy's, as in any run.
///
/// The job is written to a pipe: a host that has not ignored `SIGPIPE` (Rust
/// programs ignore it from the start) is killed when a child dies before
/// reading it all. A child that leaves a process of its own holding its
/// output (a fake worker's `sleep`; the wall forbids new processes) keeps one
/// reader thread of this process waiting until that process ends.
#[derive(Debug, Clone)]
pub struct Worker {
    program: PathBuf,
    args: Vec<OsString>,
    setup_timeout: Duration,
    grace: Duration,
}

impl Worker {
    /// A worker started as `program` with no arguments: a binary that calls
    /// [`serve`] when started that way.
    pub fn new(program: impl Into<PathBuf>) -> Worker {
        Worker {
            program: program.into(),
            args: Vec::new(),
            setup_timeout: Duration::from_secs(60),
            grace: Duration::from_secs(2),
        }
    }

    /// A worker started as `wasmcell worker` from the `wasmcell` binary at
    /// `binary`.
    pub fn wasmcell(binary: impl Into<PathBuf>) -> Worker {
        Worker::new(binary).arg("worker")
    }

    /// Adds an argument to the child's command line.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Worker {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments to the child's command line.
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<OsString>>) -> Worker {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// How long the child may take, from its start, to load the code and
    /// report its wall before it is killed and the run fails.
    pub fn setup_timeout(mut self, limit: Duration) -> Worker {
        self.setup_timeout = limit;
        self
    }

    /// How long past the guest's `limits.timeout` the child may take to send
    /// its outcome before it is killed and the run reported as
    /// [`Status::Timeout`](crate::Status::Timeout). The child keeps the
    /// deadline itself; this is for a child that does not.
    pub fn grace(mut self, grace: Duration) -> Worker {
        self.grace = grace;
        self
    }

    /// The executable the worker is started as.
    pub fn program(&self) -> &std::path::Path {
        &self.program
    }
}

/// Where a worker's policy comes from. The child reads and resolves it
/// again: a [`Policy`] holds resolved host state (canonical paths, the
/// grants' folders as checked when it was built), which is rebuilt and
/// checked again in the process that enforces it, right before it does.
/// The parent resolves it too, for the limits it watches the child by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicySource {
    /// Policy TOML, with the folder its relative paths are relative to (as
    /// [`Policy::from_toml`]).
    Toml {
        /// The policy text.
        text: String,
        /// The folder relative paths in it start from.
        base_dir: PathBuf,
    },
    /// A policy file (as [`Policy::from_file`]).
    File(PathBuf),
}

impl PolicySource {
    /// The policy, resolved here.
    ///
    /// # Errors
    ///
    /// As [`Policy::from_toml`] and [`Policy::from_file`].
    pub fn resolve(&self) -> Result<Policy, PolicyError> {
        match self {
            PolicySource::Toml { text, base_dir } => Policy::from_toml(text, base_dir),
            PolicySource::File(path) => Policy::from_file(path),
        }
    }
}

/// A [`Program`] as native code its worker loads without compiling: made by
/// this process from a program it compiled itself, and handed to the child
/// over a pipe only the two of them hold, never through a file a guest could
/// have written. Cheap to clone (the code is shared).
#[derive(Clone)]
pub struct CompiledProgram {
    name: String,
    size: u64,
    /// The SHA-256 of the WebAssembly it was compiled from, which the
    /// worker's program keeps (a pinned policy checks it there too).
    sha256: Option<[u8; 32]>,
    /// The signers that verified it when it was loaded.
    signers: Vec<String>,
    library: bool,
    engine: EngineConfig,
    code: Bytes,
}

impl std::fmt::Debug for CompiledProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledProgram")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("library", &self.library)
            .field("code_bytes", &self.code.len())
            .finish()
    }
}

impl CompiledProgram {
    /// `program`, compiled by `engine`, as native code for a worker; the
    /// worker loads it into an engine with `engine`'s configuration, and
    /// as a library when `program` was loaded as one.
    ///
    /// # Errors
    ///
    /// When `program` was compiled by another engine, or cannot be
    /// serialized.
    pub fn new(engine: &Engine, program: &Program) -> Result<CompiledProgram> {
        if !wasmtime::Engine::same(program.engine(), engine.wasmtime()) {
            bail!(
                "`{}` was compiled by another engine; pass the engine that loaded it",
                program.name()
            );
        }
        Ok(CompiledProgram {
            name: program.name().to_string(),
            size: program.size(),
            sha256: program.sha256,
            signers: program.signers.clone(),
            library: program.is_library(),
            engine: engine.config(),
            code: Bytes::from(program.precompile()?),
        })
    }

    /// The program's name (the guest's `argv[0]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This program, recorded as verified by `signers` (see
    /// `Program::with_signers`).
    pub(crate) fn with_signers(&self, signers: Vec<String>) -> CompiledProgram {
        CompiledProgram {
            signers,
            ..self.clone()
        }
    }
}

/// One run for a [`Worker`]: a policy, the compiled program, and what the
/// guest is given. Output is always captured into the [`Outcome`].
///
/// Defaults: no arguments, the policy's stdin, and the program run as a
/// command.
#[derive(Debug, Clone)]
pub struct Job {
    policy: PolicySource,
    program: CompiledProgram,
    args: Vec<String>,
    stdin: Option<Bytes>,
    invoke: Option<String>,
    record_uses: bool,
}

impl Job {
    /// A run of `program` under `policy`, with the defaults above.
    pub fn new(policy: PolicySource, program: CompiledProgram) -> Job {
        Job {
            policy,
            program,
            args: Vec::new(),
            stdin: None,
            invoke: None,
            record_uses: false,
        }
    }

    /// The guest's arguments (after `argv[0]`, the program's name).
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<String>>) -> Job {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Feeds `bytes` to the guest's stdin, replacing the policy's stdin.
    pub fn stdin(mut self, bytes: impl Into<Bytes>) -> Job {
        self.stdin = Some(bytes.into());
        self
    }

    /// Instead of running the program as a command, instantiates it and
    /// calls `call` (as `wasmcell run --invoke`; the program must have been
    /// loaded as a library), appending each result and a newline to
    /// [`Outcome::stdout`].
    pub fn invoke(mut self, call: impl Into<String>) -> Job {
        self.invoke = Some(call.into());
        self
    }

    /// Keeps the run's distinct capability uses in its outcome
    /// ([`Outcome::uses_seen`](crate::Outcome::uses_seen)), as
    /// [`SandboxBuilder::record_uses`](crate::SandboxBuilder::record_uses) does.
    pub fn record_uses(mut self, record: bool) -> Job {
        self.record_uses = record;
        self
    }
}

/// Runs `program` in this process as a job says: as a command, or
/// instantiated with `invoke` called, its results appended to stdout as
/// `wasmcell run --invoke` prints them. The matrix's in-process cells and
/// the worker's child both run through here.
pub(crate) fn run_in_process(
    sandbox: &Sandbox,
    program: &Program,
    args: &[String],
    invoke: Option<&str>,
) -> Result<Outcome> {
    let Some(call) = invoke else {
        return sandbox.run_program(program, args);
    };
    let mut instance: Instance = sandbox.instantiate(program)?;
    if instance.poisoned().is_some() {
        return Ok(instance.started().clone());
    }
    let invocation = instance.invoke(call, args)?;
    let mut outcome = invocation.outcome;
    for result in invocation.results.iter().flatten() {
        outcome.stdout.extend_from_slice(result.as_bytes());
        outcome.stdout.push(b'\n');
    }
    Ok(outcome)
}
