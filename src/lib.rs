//! wasmcell runs untrusted WebAssembly guests under a deny-by-default
//! capability policy, and tells you exactly how each run ended.
//!
//! A guest sees only what its [`Policy`] grants (directories, environment
//! variables, stdio, clocks, randomness, and the network addresses, name
//! lookups and HTTP origins listed under `[net]`, every refusal recorded as
//! a [`Denial`]), and it is metered: fuel for CPU, a cap on linear memory, a
//! wall-clock deadline that holds even while the guest blocks in a host
//! call, and a cap on output. Every run returns an
//! [`Outcome`] saying whether the guest exited, trapped, was cancelled, or
//! was stopped by which limit.
//!
//! For hosts that run many guests: an [`Engine`] compiles each guest once
//! (in memory by content hash, and optionally in a [`DiskCache`]), a
//! [`Program`] is pre-linked so a run only instantiates, runs can be
//! blocking or async and are cancelled from anywhere with a
//! [`CancelHandle`], and [`Allocator::Pooling`] makes short runs cheap.
//!
//! The public API is what this page lists; `ARCHITECTURE.md` in the
//! repository says why each part is public. The `wasmcell` command line is
//! built on it alone.
//!
//! ```no_run
//! use wasmcell::{Policy, Sandbox, Status};
//!
//! let sandbox = Sandbox::builder()
//!     .policy(Policy::from_file("policies/read-only.toml")?)
//!     .build()?;
//! let program = sandbox.load("fs_read.wasm")?; // compiled and linked once
//! for _ in 0..3 {
//!     let outcome = sandbox.run_program(&program, &["/data/hello.txt"])?;
//!     assert_eq!(outcome.status, Status::Exited(0));
//!     print!("{}", String::from_utf8_lossy(&outcome.stdout));
//! }
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! # What this sandbox does not protect against
//!
//! wasmcell isolates a guest with WebAssembly's memory safety and WASI's
//! capability model. Behind that, a process that runs one sandbox can put up
//! a second wall, the kernel's ([`wall::confine_current_process`], which the
//! CLI and the containerd shim use): Landlock, seccomp and no_new_privs. A
//! library run in the host's own process has no such wall. It does not
//! protect against:
//!
//! - bugs in wasmtime, Cranelift or wasmtime-wasi that let a guest escape:
//!   in a process without the second wall the guest then gets whatever the
//!   host process can do; behind it, what the wall leaves (the policy's
//!   grants without their inner rules, the granted ports, the allowed system
//!   calls, the process's own memory). Keep the pinned version current;
//! - CPU side channels such as Spectre between the guest and the host
//!   process;
//! - what the guest writes to granted directories and to stdout/stderr:
//!   terminal escape sequences reach your terminal when output is inherited;
//! - exhaustion of host resources outside the limits: open file handles,
//!   disk space in read-write directories, host threads used for blocking I/O;
//! - a malicious policy: whoever writes the policy decides what is granted.
#![deny(missing_docs)]

mod cache;
mod cancel;
mod capabilities;
mod engine;
mod hostfs;
mod instance;
pub mod learn;
mod limiter;
pub mod matrix;
mod outcome;
pub mod policy;
mod sandbox;
pub mod signing;
mod store;
mod term;
pub mod wall;
pub mod worker;

pub use cache::{CacheInGrant, CacheKeyError, CacheStats, DiskCache, MEMORY_CACHE_CAPACITY};
pub use cancel::CancelHandle;
pub use capabilities::{
    AuditFile, AuditSink, CapabilityUse, DENIAL_BYTES, DENIAL_FIELD_BYTES, Decision, Denial, HttpOriginCounts,
    MAX_DENIALS, MAX_HTTP_ORIGINS, MAX_USES_SEEN, OTHER_ORIGINS, SeenUse, UseCounts, UsesSeen,
};
pub use engine::{
    Allocator, ENABLED_PROPOSALS, Engine, EngineConfig, LoadError, LoadErrorKind, PoolingConfig, Program,
};
pub use hostfs::HostFile;
pub use instance::{CallOutcome, Instance, Invocation};
pub use outcome::{
    EXIT_CANCELLED, EXIT_CODE_TABLE, EXIT_FUEL, EXIT_LOAD, EXIT_MEMORY, EXIT_OUT_OF_RANGE, EXIT_OUTPUT, EXIT_SANDBOX,
    EXIT_TIMEOUT, EXIT_TRAP, EXIT_USAGE, EXIT_WALL, Outcome, RequestError, RequestErrorKind, Status,
    exit_code_for_error,
};
pub use policy::{
    Access, ByteSize, Clocks, DirGrant, Input, Limits, Origin, Output, Policy, PolicyBuilder, PolicyError,
    PolicyErrorKind, Setting,
};
pub use sandbox::{RunOptions, Sandbox, SandboxBuilder};
pub use term::sanitize;

/// Compiles the README's Rust examples as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
