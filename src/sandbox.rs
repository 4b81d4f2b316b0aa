//! Running a program under a policy: `new_store` → `run_module` or
//! `run_component` (instantiate and call the command, raced against the
//! deadline and the run's cancel handle in `RunState::race`) → `finish` into
//! an [`Outcome`].

use crate::cache::CacheInGrant;
use crate::cancel::{CancelHandle, Cancelled};
use crate::capabilities::{self, Broker, Captured, FsGuard, NetAudit, Preview, Records, RunIo, WasiSetup};
use crate::engine::{
    Engine, EngineConfig, Intent, LoadError, LoadErrorKind, Program, ProgramKind, admit_module, admit_program,
    check_pins_of,
};
use crate::limiter::{self, LimitExceeded, MemoryLimiter, OutputBudget};
use crate::outcome::{self, Ending, Outcome, Status};
use crate::policy::Policy;
use crate::store::{P2Ctx, State};
use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{InstancePre, Store, UpdateDeadline};
use wasmtime_wasi::WasiView as _;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;

/// Runs WebAssembly guests under one [`Policy`].
///
/// A `Sandbox` pairs a policy with an [`Engine`]. It is cheap to share
/// (`Clone` is a reference count) and safe to use from many threads and
/// tasks at once: each run gets its own store, WASI context and limits, and
/// per-run setup is only what the policy grants (opening granted
/// directories, building the WASI context).
///
/// # Example
///
/// ```
/// use wasmcell::{Policy, RunOptions, Sandbox, Status};
///
/// // A guest that copies stdin to stdout (normally a .wasm file on disk).
/// let cat = r#"(module
///     (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
///     (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
///     (memory (export "memory") 1)
///     (func (export "_start")
///         (i32.store (i32.const 0) (i32.const 16))   ;; iovec: buffer at 16,
///         (i32.store (i32.const 4) (i32.const 1024)) ;; 1 KiB long
///         (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
///         (i32.store (i32.const 4) (i32.load (i32.const 8)))
///         (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
///
/// let sandbox = Sandbox::builder().policy(Policy::deny_all()).build()?;
/// let program = sandbox.load_bytes("cat.wasm", cat.as_bytes())?;
/// let outcome = sandbox.run_with(&program, &[] as &[&str], RunOptions::new().stdin("hello"))?;
/// assert_eq!(outcome.status, Status::Exited(0));
/// assert_eq!(outcome.stdout, b"hello");
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    policy: Policy,
    /// The policy's digest, for every outcome.
    policy_sha256: String,
    io: RunIo,
    cache_in_grant: Option<CacheInGrant>,
}

/// Builds a [`Sandbox`].
///
/// Defaults:
/// - the policy is [`Policy::deny_all`]: no files, empty environment, stdin
///   closed, no network, default limits;
/// - the process-wide [`Engine::shared`] engine for the policy's
///   [`EngineConfig`], so separately built sandboxes still share compiled
///   programs, one epoch thread and one I/O runtime;
/// - stdin comes from the policy (closed unless it says otherwise);
/// - output the policy sends to `inherit` is captured into
///   [`Outcome::stdout`] and [`Outcome::stderr`] instead, bounded by
///   `limits.output`.
///
/// # Example
///
/// ```
/// use wasmcell::{Engine, EngineConfig, Policy, Sandbox};
///
/// let policy = Policy::from_toml("[limits]\nmemory = \"16 MiB\"\ntimeout = \"2s\"", ".")?;
/// let engine = Engine::new(EngineConfig::for_policy(&policy))?;
/// let sandbox = Sandbox::builder()
///     .engine(engine)
///     .policy(policy)
///     .stdin("every run reads this")
///     .log_denials(true)
///     .build()?;
/// assert_eq!(sandbox.policy().limits().memory.value, 16 << 20);
///
/// // An engine that cannot enforce the policy is refused up front.
/// let metered = Policy::from_toml("[limits]\nfuel = 100", ".")?;
/// let unmetered = Engine::new(EngineConfig::default())?;
/// assert!(Sandbox::builder().engine(unmetered).policy(metered).build().is_err());
/// # Ok::<(), anyhow::Error>(())
/// ```
pub struct SandboxBuilder {
    policy: Policy,
    engine: Option<Engine>,
    io: RunIo,
}

impl Default for SandboxBuilder {
    fn default() -> Self {
        SandboxBuilder {
            policy: Policy::deny_all(),
            engine: None,
            io: RunIo {
                stdin: None,
                capture: true,
                log_denials: false,
                audit: None,
                record_uses: false,
            },
        }
    }
}

impl SandboxBuilder {
    /// Uses `policy` for every run.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Runs on a shared `engine` instead of creating one, so that programs
    /// compiled once run under many policies.
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Feeds `bytes` to every run's stdin, replacing the policy's stdin
    /// ([`RunOptions::stdin`] replaces it for one run).
    pub fn stdin(mut self, bytes: impl Into<Bytes>) -> Self {
        self.io.stdin = Some(bytes.into());
        self
    }

    /// Whether output the policy sends to `inherit` is captured into the
    /// [`Outcome`] (`true`, the default) or written to this process's own
    /// stdout and stderr (`false`, as the CLI does).
    pub fn capture_output(mut self, capture: bool) -> Self {
        self.io.capture = capture;
        self
    }

    /// Whether each refused capability use is also printed to this process's
    /// stderr as it happens (`false` by default; the CLI turns it on when
    /// asked to be verbose or to write a report). Refusals are always in [`Outcome::denials`].
    pub fn log_denials(mut self, log: bool) -> Self {
        self.io.log_denials = log;
        self
    }

    /// Hands every capability use of each run (file operations and network
    /// uses, allowed or refused) to `sink` as it happens; [`AuditFile`](crate::AuditFile)
    /// writes them as JSON lines, bounded. Counts per kind are in
    /// [`Outcome::uses`] either way.
    pub fn audit(mut self, sink: Arc<dyn crate::AuditSink>) -> Self {
        self.io.audit = Some(crate::capabilities::AuditHook(sink));
        self
    }

    /// Whether each run's [`Outcome::uses_seen`] holds its distinct
    /// capability uses (`false` by default): what [`crate::learn`] learns a
    /// policy from. Bounded by [`MAX_USES_SEEN`](crate::MAX_USES_SEEN).
    pub fn record_uses(mut self, record: bool) -> Self {
        self.io.record_uses = record;
        self
    }

    /// Creates the sandbox.
    ///
    /// # Errors
    ///
    /// When a new engine cannot be configured, or when the given engine does
    /// not fit the policy (it lacks fuel metering the policy needs, has a
    /// different stack size, or pool slots smaller than `limits.memory`).
    pub fn build(self) -> Result<Sandbox> {
        let engine = match self.engine {
            Some(engine) => engine,
            None => Engine::shared(EngineConfig::for_policy(&self.policy))?,
        };
        if let Some(why) = engine.config().mismatch(&self.policy) {
            bail!("the engine cannot enforce this policy: {why}");
        }
        // A run never reads compiled code or stamps its guest could have
        // written (see `CacheInGrant`).
        let cache_in_grant = engine
            .disk_cache()
            .and_then(|cache| CacheInGrant::find(&self.policy, cache.dir()));
        let engine = match cache_in_grant {
            Some(_) => engine.without_disk_cache(),
            None => engine,
        };
        Ok(Sandbox {
            inner: Arc::new(Inner {
                engine,
                policy_sha256: self.policy.sha256(),
                policy: self.policy,
                io: self.io,
                cache_in_grant,
            }),
        })
    }
}

impl Sandbox {
    /// A builder with the defaults listed on [`SandboxBuilder`].
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// Creates (or truncates) the files the policy sends stdout and stderr
    /// to, as a run does when it starts, without following links. A process
    /// that confines itself with [`crate::wall`] calls this first: the wall
    /// lets it write those files, but not create them.
    ///
    /// # Errors
    ///
    /// As a run's start: a path that became a link, or is not a regular file.
    pub fn create_output_files(&self) -> Result<()> {
        for (output, what) in [
            (self.inner.policy.stdout(), "stdout file"),
            (self.inner.policy.stderr(), "stderr file"),
        ] {
            if let crate::policy::Output::File(path) = output {
                crate::hostfs::create_file(path, what)?;
            }
        }
        Ok(())
    }

    /// The policy every run follows.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The digest of this sandbox's policy ([`Policy::sha256`]), taken once
    /// when the sandbox was built: what every outcome's `policy_sha256` says.
    pub fn policy_sha256(&self) -> &str {
        &self.inner.policy_sha256
    }

    /// The engine runs happen on.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Why this sandbox loads without its engine's disk cache: one of the
    /// policy's read-write grants reaches the cache folder, so a guest could
    /// have planted code there. `None` when the engine has no disk cache or
    /// the grants leave it alone.
    pub fn cache_in_grant(&self) -> Option<&CacheInGrant> {
        self.inner.cache_in_grant.as_ref()
    }

    /// Reads, compiles and links a module (`wasm32-wasip1`) or component
    /// (`wasm32-wasip2`, command world), refusing files over the policy's
    /// `limits.module-size`. Like [`Engine::load`] with the policy's limit.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] when the file is unreadable, too large, not
    /// WebAssembly, invalid, imports anything but WASI, or is not a command.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Program, LoadError> {
        self.load_file_as(path.as_ref(), Intent::Command, None)
    }

    /// Like [`Sandbox::load`], for a module whose signature comes apart
    /// from it (a detached signature, as `wasmcell sign --detached` or
    /// `wasmsign2 sign -S` writes it) rather than embedded: the policy's
    /// `module.signed-by` keys verify `signature` over the module's bytes.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::load`].
    pub fn load_signed(&self, path: impl AsRef<Path>, signature: &[u8]) -> Result<Program, LoadError> {
        self.load_file_as(path.as_ref(), Intent::Command, Some(signature))
    }

    /// Like [`Sandbox::load_library`], with a detached signature (see
    /// [`Sandbox::load_signed`]).
    ///
    /// # Errors
    ///
    /// As [`Sandbox::load_library`].
    pub fn load_library_signed(&self, path: impl AsRef<Path>, signature: &[u8]) -> Result<Program, LoadError> {
        self.load_file_as(path.as_ref(), Intent::Library, Some(signature))
    }

    fn load_file_as(&self, path: &Path, intent: Intent, detached: Option<&[u8]>) -> Result<Program, LoadError> {
        let limit = &self.inner.policy.limits().module_size;
        self.inner.engine.load_file(
            path,
            limit.value,
            &limit.origin.cite("limits.module-size"),
            intent,
            &|candidate| admit_module(&self.inner.policy, candidate, detached),
        )
    }

    /// Like [`Sandbox::load`], for a guest whose exports are called through
    /// [`Sandbox::instantiate`] rather than run as a command: a reactor or
    /// library module, or a component of any world. See
    /// [`Engine::load_library`].
    ///
    /// # Errors
    ///
    /// As [`Sandbox::load`], except that the guest need not be a command.
    pub fn load_library(&self, path: impl AsRef<Path>) -> Result<Program, LoadError> {
        self.load_file_as(path.as_ref(), Intent::Library, None)
    }

    /// Like [`Sandbox::load_library`], for bytes already in memory (binary
    /// or WAT).
    ///
    /// # Errors
    ///
    /// As [`Sandbox::load_library`].
    pub fn load_library_bytes(&self, name: &str, bytes: &[u8]) -> Result<Program, LoadError> {
        self.check_size(name, bytes.len() as u64)?;
        self.load_bytes_as(name, bytes, Intent::Library)
    }

    /// Like [`Sandbox::load`], for bytes already in memory (binary or WAT);
    /// `name` is what the guest sees as `argv[0]`.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::load`].
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Program, LoadError> {
        self.check_size(name, bytes.len() as u64)?;
        self.load_bytes_as(name, bytes, Intent::Command)
    }

    fn load_bytes_as(&self, name: &str, bytes: &[u8], intent: Intent) -> Result<Program, LoadError> {
        self.inner
            .engine
            .compile(name, bytes, intent, &|candidate| {
                admit_module(&self.inner.policy, candidate, None)
            })
            .map_err(|kind| LoadError {
                module: name.into(),
                kind,
            })
    }

    /// Admits precompiled code `name` under the policy: the digest of the
    /// WebAssembly it came from, which its header records, must be pinned
    /// when the policy pins modules, and a policy that asks for a signature
    /// refuses it (precompiled code carries none).
    fn admit_precompiled(&self, name: &str, program: Program) -> Result<Program, LoadError> {
        let fail = |kind| LoadError {
            module: name.into(),
            kind,
        };
        let policy = &self.inner.policy;
        check_pins_of(policy, program.sha256.as_ref(), true).map_err(fail)?;
        if let Some(keys) = policy.module_signed_by() {
            return Err(fail(LoadErrorKind::ModuleSignature {
                reason: "it is precompiled code, which carries no signature".into(),
                origin: keys.origin.cite("module.signed-by"),
            }));
        }
        Ok(program)
    }

    /// Like [`Engine::load_precompiled`], refusing files over the policy's
    /// `limits.module-size` as [`Sandbox::load`] does, and files that one of
    /// the policy's read-write grants reaches ([`Policy::writable_overlap`]):
    /// a guest under this policy could have written them in an earlier run.
    ///
    /// # Safety
    ///
    /// As [`Engine::load_precompiled`]: the file is native code that runs
    /// unvalidated, so it must be one you compiled yourself and kept where
    /// nobody else could write it.
    ///
    /// # Errors
    ///
    /// As [`Engine::load_precompiled`], and when the file is too large or
    /// inside a read-write grant ([`LoadErrorKind::Precompiled`]).
    pub unsafe fn load_precompiled(&self, path: impl AsRef<Path>) -> Result<Program, LoadError> {
        let path = path.as_ref();
        if let Some((host, guest)) = self.inner.policy.writable_overlap(path) {
            return Err(LoadError {
                module: path.to_path_buf(),
                kind: LoadErrorKind::Precompiled(format!(
                    "refusing precompiled code inside the read-write grant at `{guest}` (host `{}`): a guest could \
                     have written it; keep compiled code outside every read-write grant",
                    host.display()
                )),
            });
        }
        let size = std::fs::metadata(path)
            .map_err(|e| LoadError {
                module: path.to_path_buf(),
                kind: LoadErrorKind::Read(e),
            })?
            .len();
        self.check_size(&path.to_string_lossy(), size)?;
        // SAFETY: the caller vouches for the file.
        let program = unsafe { self.inner.engine.load_precompiled(path) }?;
        self.admit_precompiled(&path.to_string_lossy(), program)
    }

    /// Like [`Engine::load_precompiled_bytes`], refusing code over the
    /// policy's `limits.module-size` as [`Sandbox::load_bytes`] does.
    ///
    /// # Safety
    ///
    /// As [`Engine::load_precompiled`]: the bytes are native code that runs
    /// unvalidated, so they must be code you compiled yourself and kept
    /// where nobody else could change it.
    ///
    /// # Errors
    ///
    /// As [`Engine::load_precompiled_bytes`], and when the code is too large.
    pub unsafe fn load_precompiled_bytes(&self, name: &str, bytes: &[u8]) -> Result<Program, LoadError> {
        self.check_size(name, bytes.len() as u64)?;
        // SAFETY: the caller vouches for the bytes.
        let program = unsafe { self.inner.engine.load_precompiled_bytes(name, bytes) }?;
        self.admit_precompiled(name, program)
    }

    fn check_size(&self, name: &str, size: u64) -> Result<(), LoadError> {
        let limit = &self.inner.policy.limits().module_size;
        if size > limit.value {
            return Err(LoadError {
                module: name.into(),
                kind: LoadErrorKind::TooLarge {
                    size,
                    limit: limit.value,
                    origin: limit.origin.cite("limits.module-size"),
                },
            });
        }
        Ok(())
    }

    /// Loads `module` and runs it once with `args` (not including `argv[0]`,
    /// which is the module's file name). Blocks until the guest ends.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] when the module cannot be loaded; any other error means
    /// the sandbox itself failed. How the guest ended is never an error: see
    /// [`Outcome::status`].
    pub fn run(&self, module: impl AsRef<Path>, args: &[impl AsRef<str>]) -> Result<Outcome> {
        let program = self.load(module)?;
        self.run_program(&program, args)
    }

    /// Runs an already loaded program once. Blocks until the guest ends.
    /// Same as [`Sandbox::run_with`] with default [`RunOptions`].
    ///
    /// Do not call this from inside a tokio runtime; use
    /// [`Sandbox::run_program_async`] there.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] when the program is larger than this policy's
    /// `limits.module-size`; otherwise only when the sandbox itself fails,
    /// for example when a granted host directory can no longer be opened,
    /// when `program` was compiled by another engine, or when a pooling
    /// engine already has `max_runs` runs in flight.
    pub fn run_program(&self, program: &Program, args: &[impl AsRef<str>]) -> Result<Outcome> {
        self.run_with(program, args, RunOptions::default())
    }

    /// Like [`Sandbox::run_program`], for hosts that run on tokio. The caller's
    /// runtime must have the time driver enabled.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::run_program`].
    pub async fn run_program_async(&self, program: &Program, args: &[impl AsRef<str>]) -> Result<Outcome> {
        self.run_with_async(program, args, RunOptions::default()).await
    }

    /// Runs an already loaded program once with per-run `options` (stdin
    /// bytes, a cancel handle). Blocks until the guest ends or is cancelled.
    ///
    /// Do not call this from inside a tokio runtime; use
    /// [`Sandbox::run_with_async`] there.
    ///
    /// # Example
    ///
    /// Cancelling a guest from another thread while it sleeps in a host call:
    ///
    /// ```
    /// use std::time::Duration;
    /// use wasmcell::{CancelHandle, Policy, RunOptions, Sandbox, Status};
    ///
    /// // Sleeps for an hour in one `poll_oneoff` call.
    /// let sleeper = r#"(module
    ///     (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    ///     (memory (export "memory") 1)
    ///     (func (export "_start")
    ///         (i32.store8 (i32.const 8) (i32.const 0))                ;; eventtype clock
    ///         (i64.store (i32.const 24) (i64.const 3600000000000))    ;; timeout: 1 h
    ///         (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#;
    ///
    /// let policy = Policy::builder().timeout(Duration::from_secs(7200)).build()?;
    /// let sandbox = Sandbox::builder().policy(policy).build()?;
    /// let program = sandbox.load_bytes("sleeper.wasm", sleeper.as_bytes())?;
    ///
    /// let cancel = CancelHandle::new();
    /// let canceller = cancel.clone();
    /// std::thread::spawn(move || {
    ///     std::thread::sleep(Duration::from_millis(50));
    ///     canceller.cancel();
    /// });
    /// let outcome = sandbox.run_with(&program, &[] as &[&str], RunOptions::new().cancel(&cancel))?;
    /// assert_eq!(outcome.status, Status::Cancelled);
    /// assert!(outcome.elapsed < Duration::from_secs(60));
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Sandbox::run_program`].
    pub fn run_with(&self, program: &Program, args: &[impl AsRef<str>], options: RunOptions) -> Result<Outcome> {
        self.inner
            .engine
            .runtime()?
            .block_on(self.run_with_async(program, args, options))
    }

    /// Like [`Sandbox::run_with`], for hosts that run on tokio. The caller's
    /// runtime must have the time driver enabled. Dropping the future stops
    /// the guest as well.
    ///
    /// # Example
    ///
    /// ```
    /// use wasmcell::{Policy, RunOptions, Sandbox, Status};
    ///
    /// # let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    /// # rt.block_on(async {
    /// let sandbox = Sandbox::builder().policy(Policy::deny_all()).build()?;
    /// let program = sandbox.load_bytes("empty.wasm", br#"(module (func (export "_start")))"#)?;
    /// let runs = (0..8).map(|_| sandbox.run_with_async(&program, &[] as &[&str], RunOptions::new()));
    /// for outcome in futures_join_all(runs).await {
    ///     assert_eq!(outcome?.status, Status::Exited(0));
    /// }
    /// # Ok::<(), anyhow::Error>(())
    /// # })?;
    /// # async fn futures_join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    /// #     let mut out = Vec::new();
    /// #     for f in fs { out.push(f.await); }
    /// #     out
    /// # }
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Sandbox::run_program`].
    pub async fn run_with_async(
        &self,
        program: &Program,
        args: &[impl AsRef<str>],
        options: RunOptions,
    ) -> Result<Outcome> {
        if program.is_library() {
            bail!(
                "`{}` was loaded as a library (`load_library`): call its exports through `Sandbox::instantiate`, or load it with `load` to run it as a command",
                program.name()
            );
        }
        let (run, mut wasi) = self.begin(program, args, options)?;
        match &program.kind {
            ProgramKind::Module(pre) => {
                let mut store = self.p1_store(&mut wasi, &run)?;
                let ended = run.race(run_module(pre, &mut store)).await;
                self.finish(&mut store, ended, &run)
            }
            ProgramKind::Component(pre) => {
                let mut store = self.p2_store(&mut wasi, &run)?;
                let ended = run.race(run_component(pre, &mut store)).await;
                self.finish(&mut store, ended, &run)
            }
            ProgramKind::Library(_) => bail!("`{}` was loaded as a library", program.name()),
        }
    }

    /// Checks that `program` fits this sandbox and prepares a run of it:
    /// the output budget, records and deadline, and the WASI context the
    /// policy grants. Limits are armed from here on.
    pub(crate) fn begin(
        &self,
        program: &Program,
        args: &[impl AsRef<str>],
        options: RunOptions,
    ) -> Result<(RunState, WasiSetup)> {
        let inner = &*self.inner;
        if !wasmtime::Engine::same(program.engine(), inner.engine.wasmtime()) {
            bail!(
                "`{}` was compiled by another engine; load it with this sandbox's engine",
                program.name()
            );
        }
        self.check_size(program.name(), program.size())?;
        // A program loaded elsewhere (by the engine alone, or by a sandbox
        // with another policy) meets this policy's pins here.
        admit_program(&inner.policy, program.sha256.as_ref(), &program.signers).map_err(|kind| LoadError {
            module: program.name().into(),
            kind,
        })?;
        inner.engine.start_ticker()?;
        let policy = &inner.policy;
        let mut argv = vec![program.name().to_string()];
        argv.extend(args.iter().map(|a| a.as_ref().to_string()));
        let budget = Arc::new(OutputBudget::new(policy.limits().output.value));
        let captured = Captured::default();
        let denials = Records::new(inner.io.log_denials, inner.io.audit.clone(), inner.io.record_uses);
        // Secrets are read now, for this run, and live no longer than it.
        let broker = Arc::new(Broker::start(policy)?);
        let net = NetAudit::new(policy.net(), policy.limits(), denials.clone(), broker);
        let io;
        let io = match options.stdin {
            Some(stdin) => {
                io = RunIo {
                    stdin: Some(stdin),
                    ..inner.io.clone()
                };
                &io
            }
            None => &inner.io,
        };
        let preview = if program.is_component() {
            Preview::P2
        } else {
            Preview::P1
        };
        let wasi = policy.wasi_builder(&argv, preview, io, &budget, &captured, &net, &denials)?;
        // Limits are armed before instantiation: a start function can loop,
        // and the declared minimum memory already goes through the limiter.
        let start = Instant::now();
        let deadline = start + policy.limits().timeout.value;
        let run = RunState {
            start,
            deadline,
            budget,
            captured,
            net,
            denials,
            cancel: options.cancel,
            module_sha256: program.sha256(),
            policy_sha256: inner.policy_sha256.clone(),
        };
        Ok((run, wasi))
    }

    /// A store for a core module, with the WASI preview 1 context.
    pub(crate) fn p1_store(&self, wasi: &mut WasiSetup, run: &RunState) -> Result<Store<State<WasiP1Ctx>>> {
        let mut ctx = wasi.builder.build_p1();
        limiter::cap_handles(ctx.ctx().table, self.inner.policy.limits());
        let mut fs = std::mem::take(&mut wasi.fs);
        fs.p1_preopens();
        self.new_store(ctx, fs, run)
    }

    /// A store for a component, with the WASI 0.2 and HTTP contexts.
    pub(crate) fn p2_store(&self, wasi: &mut WasiSetup, run: &RunState) -> Result<Store<State<P2Ctx>>> {
        let mut table = ResourceTable::new();
        limiter::cap_handles(&mut table, self.inner.policy.limits());
        let ctx = P2Ctx {
            ctx: wasi.builder.build(),
            table,
            net: run.net.clone(),
            http: capabilities::http_ctx(),
        };
        self.new_store(ctx, std::mem::take(&mut wasi.fs), run)
    }

    fn new_store<W: Send + 'static>(&self, wasi: W, fs: FsGuard, run: &RunState) -> Result<Store<State<W>>> {
        let limits = self.inner.policy.limits();
        let state = State {
            wasi,
            fs,
            limiter: MemoryLimiter::new(limits.memory.value),
            deadline: run.deadline,
            cancel: run.cancel.clone(),
        };
        let mut store = Store::new(self.inner.engine.wasmtime(), state);
        store.limiter(|s| &mut s.limiter);
        if self.inner.engine.config().fuel {
            // An engine with metering compiled in needs fuel in every store;
            // an unmetered policy gets all there is.
            let fuel = limits.fuel.value.unwrap_or(u64::MAX);
            store
                .set_fuel(fuel)
                .map_err(anyhow::Error::from)
                .context("failed to set fuel")?;
        }
        // Checked at every epoch tick while the guest computes. Yielding lets
        // the runner's timer and cancel handle (and other runs on the same
        // executor) make progress; the checks here stop a guest that never
        // calls out even if nothing polls the run in between.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            if state.cancel.as_ref().is_some_and(CancelHandle::is_cancelled) {
                Err(wasmtime::Error::new(Cancelled))
            } else if Instant::now() >= state.deadline {
                Err(wasmtime::Error::new(LimitExceeded::Timeout))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    /// How the run ended, as an [`Outcome`]; captured output and refusals
    /// recorded so far are taken into it.
    pub(crate) fn finish<W>(&self, store: &mut Store<State<W>>, ended: Ended, run: &RunState) -> Result<Outcome> {
        let wall = run.start.elapsed();
        let limiter = &store.data().limiter;
        let result = match ended {
            Ended::Finished(result) => Some(result),
            Ended::TimedOut => None,
            Ended::Cancelled => Some(Err(wasmtime::Error::new(Cancelled))),
        };
        if let Some(Err(err)) = &result
            && let Some(full) = err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        {
            bail!("the engine's pool is full ({full}); wait for runs to finish, or raise PoolingConfig::max_runs");
        }
        let (status, trap) = outcome::classify(Ending {
            result: result.as_ref(),
            memory_refused: limiter.refused().is_some(),
            output_exceeded: run.budget.exceeded(),
        });
        // Only what would otherwise pass for a guest's trap is looked at: a
        // limit the sandbox imposed is never the host failing.
        if status == Status::Trap
            && let Some(Err(err)) = &result
            && outcome::is_host_failure(err)
        {
            bail!(
                "the host could not provide the run's resources ({err:#}); run fewer guests at once, or raise the process's memory and mapping limits (ulimit -v, vm.max_map_count)"
            );
        }
        let peak_memory_bytes = limiter.peak();
        let fuel_used = self
            .inner
            .policy
            .limits()
            .fuel
            .value
            .map(|total| total.saturating_sub(store.get_fuel().unwrap_or(0)));
        let (denials, denials_dropped, uses) = run.denials.take();
        let take = |b: &std::sync::Mutex<Vec<u8>>| std::mem::take(&mut *b.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(Outcome {
            status,
            trap,
            fuel_used,
            elapsed: wall,
            peak_memory_bytes,
            stdout_bytes: run.budget.stdout_bytes(),
            stderr_bytes: run.budget.stderr_bytes(),
            stdout: take(&run.captured.stdout),
            stderr: take(&run.captured.stderr),
            denials,
            denials_dropped,
            uses,
            http: run.net.origins.take(),
            wall: crate::wall::current(),
            module_sha256: run.module_sha256.clone(),
            policy_sha256: Some(run.policy_sha256.clone()),
            uses_seen: run.denials.take_seen(),
        })
    }
}

/// What one run tracks outside its store. An [`Instance`](crate::Instance)
/// keeps one for its life and moves `start` and `deadline` for each call.
pub(crate) struct RunState {
    pub(crate) start: Instant,
    pub(crate) deadline: Instant,
    budget: Arc<OutputBudget>,
    captured: Captured,
    net: NetAudit,
    /// Every refusal of the run, network and filesystem.
    denials: Records,
    pub(crate) cancel: Option<CancelHandle>,
    /// The program's SHA-256, for its outcome.
    module_sha256: Option<String>,
    /// The policy's digest, for its outcome.
    policy_sha256: String,
}

/// How the race between a guest, its deadline and its cancel handle ended.
pub(crate) enum Ended {
    Finished(wasmtime::Result<i32>),
    TimedOut,
    Cancelled,
}

impl RunState {
    /// Runs `guest` until it ends, the deadline passes or the run is
    /// cancelled. The epoch callback catches a guest that computes past the
    /// deadline; the timer and the cancel handle catch one blocked in a host
    /// call (sleeping, reading stdin), which never reaches an epoch check.
    /// Dropping the guest's future unwinds it cleanly.
    pub(crate) async fn race(&self, guest: impl std::future::Future<Output = wasmtime::Result<i32>>) -> Ended {
        let timed = async {
            match tokio::time::timeout_at(self.deadline.into(), guest).await {
                Ok(result) => Ended::Finished(result),
                Err(_) => Ended::TimedOut,
            }
        };
        match &self.cancel {
            None => timed.await,
            Some(cancel) => tokio::select! {
                biased;
                () = cancel.cancelled() => Ended::Cancelled,
                ended = timed => ended,
            },
        }
    }
}

/// Per-run settings for [`Sandbox::run_with`].
///
/// Defaults: stdin as the sandbox gives it, and no cancel handle (the run
/// still ends at the policy's `limits.timeout`).
///
/// # Example
///
/// ```
/// use wasmcell::{CancelHandle, RunOptions};
///
/// let batch = CancelHandle::new();
/// let options = RunOptions::new().stdin(b"job input".to_vec()).cancel(&batch);
/// # let _ = options;
/// ```
///
/// See [`Sandbox`] for a run that reads its stdin, and [`Sandbox::run_with`]
/// for a cancelled one.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    stdin: Option<Bytes>,
    pub(crate) cancel: Option<CancelHandle>,
}

impl RunOptions {
    /// The defaults listed above.
    pub fn new() -> RunOptions {
        RunOptions::default()
    }

    /// Feeds `bytes` to this run's stdin, replacing the sandbox's and the
    /// policy's stdin.
    pub fn stdin(mut self, bytes: impl Into<Bytes>) -> RunOptions {
        self.stdin = Some(bytes.into());
        self
    }

    /// Lets `handle` cancel this run. One handle may cancel many runs.
    pub fn cancel(mut self, handle: &CancelHandle) -> RunOptions {
        self.cancel = Some(handle.clone());
        self
    }
}

async fn run_module(pre: &InstancePre<State<WasiP1Ctx>>, store: &mut Store<State<WasiP1Ctx>>) -> wasmtime::Result<i32> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
    start.call_async(&mut *store, ()).await?;
    Ok(0)
}

async fn run_component(pre: &CommandPre<State<P2Ctx>>, store: &mut Store<State<P2Ctx>>) -> wasmtime::Result<i32> {
    let command = pre.instantiate_async(&mut *store).await?;
    match command.wasi_cli_run().call_run(&mut *store).await? {
        Ok(()) => Ok(0),
        Err(()) => Ok(1),
    }
}
