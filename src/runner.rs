//! Running a module or component under a policy: `new_engine` →
//! `load_program` → `new_store` → `instantiate_and_run` → `finish`.

use crate::capabilities::{Captured, RunIo};
use crate::limits::{self, LimitExceeded, MemoryLimiter, OutputBudget};
use crate::outcome::{self, Ending, Outcome};
use crate::policy::{ByteSize, Policy};
use anyhow::{Context as _, Result};
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Config, Engine, InstancePre, Module, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};

/// Runs WebAssembly guests under one [`Policy`].
///
/// A `Sandbox` owns a wasmtime engine configured from the policy's limits. It
/// is cheap to share (`Clone` is a reference count) and safe to use from many
/// threads at once: each run gets its own store, WASI context and limits.
///
/// # Example
///
/// ```no_run
/// use wasmcell::{Policy, Sandbox, Status};
///
/// let sandbox = Sandbox::builder()
///     .policy(Policy::from_file("policies/deny-all.toml")?)
///     .stdin(b"hello".to_vec())
///     .build()?;
/// let outcome = sandbox.run("hello.wasm", &["--greet"])?;
/// assert_eq!(outcome.status, Status::Exited(0));
/// println!("{}", String::from_utf8_lossy(&outcome.stdout));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    policy: Policy,
    io: RunIo,
    p1_linker: wasmtime::Linker<State<WasiP1Ctx>>,
    p2_linker: wasmtime::component::Linker<State<P2Ctx>>,
    runtime: OnceLock<tokio::runtime::Runtime>,
    ticker: EpochTicker,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker.stop.store(true, Ordering::Relaxed);
    }
}

/// Builds a [`Sandbox`].
///
/// Defaults:
/// - the policy is [`Policy::deny_all`]: no files, empty environment, stdin
///   closed, no network, default limits;
/// - stdin comes from the policy (closed unless it says otherwise);
/// - output the policy sends to `inherit` is captured into
///   [`Outcome::stdout`] and [`Outcome::stderr`] instead, bounded by
///   `limits.output`.
pub struct SandboxBuilder {
    policy: Policy,
    io: RunIo,
}

impl Default for SandboxBuilder {
    fn default() -> Self {
        SandboxBuilder {
            policy: Policy::deny_all(),
            io: RunIo {
                stdin: None,
                capture: true,
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

    /// Feeds `bytes` to every run's stdin, replacing the policy's stdin.
    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.io.stdin = Some(bytes);
        self
    }

    /// Whether output the policy sends to `inherit` is captured into the
    /// [`Outcome`] (`true`, the default) or written to this process's own
    /// stdout and stderr (`false`, as the CLI does).
    pub fn capture_output(mut self, capture: bool) -> Self {
        self.io.capture = capture;
        self
    }

    /// Creates the engine and linkers.
    ///
    /// # Errors
    ///
    /// When wasmtime rejects the engine configuration derived from the
    /// policy's limits.
    pub fn build(self) -> Result<Sandbox> {
        let engine = new_engine(&self.policy)?;
        let p1_linker = new_p1_linker(&engine)?;
        let p2_linker = new_p2_linker(&engine)?;
        let ticker = EpochTicker::start(&engine)?;
        Ok(Sandbox {
            inner: Arc::new(Inner {
                engine,
                policy: self.policy,
                io: self.io,
                p1_linker,
                p2_linker,
                runtime: OnceLock::new(),
                ticker,
            }),
        })
    }
}

/// A module or component compiled and linked against WASI, ready to run many
/// times.
#[derive(Clone)]
pub struct Program {
    name: String,
    kind: ProgramKind,
}

#[derive(Clone)]
enum ProgramKind {
    Module(InstancePre<State<WasiP1Ctx>>),
    Component(CommandPre<State<P2Ctx>>),
}

impl Program {
    /// The name the guest sees as `argv[0]`: the file name it was loaded from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is a component (`wasm32-wasip2`) rather than a core
    /// module (`wasm32-wasip1`).
    pub fn is_component(&self) -> bool {
        matches!(self.kind, ProgramKind::Component(_))
    }
}

/// A module or component that could not be loaded or linked. Nothing ran.
#[derive(Debug)]
pub struct LoadError {
    module: PathBuf,
    kind: LoadErrorKind,
}

/// Why a module could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// The file could not be read.
    Read(std::io::Error),
    /// The file is larger than `limits.module-size`.
    TooLarge {
        /// Bytes in the file (at least).
        size: u64,
        /// The limit.
        limit: u64,
        /// Where the limit was set.
        origin: String,
    },
    /// Neither a WebAssembly binary nor WAT text.
    NotWasm(String),
    /// wasmtime rejected the module: malformed, truncated, or using a
    /// proposal this sandbox turns off.
    Invalid(String),
    /// The module imports something WASI does not provide.
    Link(String),
    /// The module is not a WASI command (no `_start`, or a component that
    /// does not export `wasi:cli/run`).
    NotCommand(String),
}

impl LoadError {
    /// The module that failed to load.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// Why it failed.
    pub fn kind(&self) -> &LoadErrorKind {
        &self.kind
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot load `{}`: ", self.module.display())?;
        match &self.kind {
            LoadErrorKind::Read(e) => write!(f, "{e}; check the path"),
            LoadErrorKind::TooLarge { size, limit, origin } => write!(
                f,
                "the file is {}, over the {} allowed ({origin}); raise it with --max-module-size",
                ByteSize(*size),
                ByteSize(*limit)
            ),
            LoadErrorKind::NotWasm(why) => write!(
                f,
                "not a WebAssembly module or component ({why}); build the guest for wasm32-wasip1 or wasm32-wasip2"
            ),
            LoadErrorKind::Invalid(why) => write!(f, "invalid WebAssembly: {why}"),
            LoadErrorKind::Link(why) => write!(
                f,
                "{why}; wasmcell provides only WASI (wasi_snapshot_preview1 for modules, WASI 0.2 for components)"
            ),
            LoadErrorKind::NotCommand(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            LoadErrorKind::Read(e) => Some(e),
            _ => None,
        }
    }
}

/// Per-run store data: the guest's WASI context and its limiter.
pub(crate) struct State<W> {
    wasi: W,
    limiter: MemoryLimiter,
    deadline: Instant,
}

/// WASI 0.2 context for components.
pub(crate) struct P2Ctx {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State<P2Ctx> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.wasi.table,
        }
    }
}

impl Sandbox {
    /// A builder with the defaults listed on [`SandboxBuilder`].
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// The policy every run follows.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Reads, compiles and links a module (`wasm32-wasip1`) or component
    /// (`wasm32-wasip2`, command world); which one is detected from the
    /// file's header. WAT text is accepted too.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] when the file is unreadable, larger than
    /// `limits.module-size`, not WebAssembly, invalid, imports anything but
    /// WASI, or is not a command.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Program, LoadError> {
        let path = path.as_ref();
        let fail = |kind| LoadError {
            module: path.to_path_buf(),
            kind,
        };
        let limit = self.inner.policy.limits.module_size.value;
        let too_large = |size| {
            fail(LoadErrorKind::TooLarge {
                size,
                limit,
                origin: self
                    .inner
                    .policy
                    .limits
                    .module_size
                    .origin
                    .describe("limits.module-size"),
            })
        };
        let file = std::fs::File::open(path).map_err(|e| fail(LoadErrorKind::Read(e)))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size > limit {
            return Err(too_large(size));
        }
        // The size can change between the check and the read; read at most
        // one byte past the limit so that a growing file cannot slip through.
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(LoadErrorKind::Read(e)))?;
        if bytes.len() as u64 > limit {
            return Err(too_large(bytes.len() as u64));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.load_program(&name, &bytes).map_err(fail)
    }

    /// Like [`Sandbox::load`], for bytes already in memory; `name` is what
    /// the guest sees as `argv[0]`.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::load`].
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Program, LoadError> {
        let fail = |kind| LoadError {
            module: PathBuf::from(name),
            kind,
        };
        let limit = self.inner.policy.limits.module_size.value;
        if bytes.len() as u64 > limit {
            return Err(fail(LoadErrorKind::TooLarge {
                size: bytes.len() as u64,
                limit,
                origin: self
                    .inner
                    .policy
                    .limits
                    .module_size
                    .origin
                    .describe("limits.module-size"),
            }));
        }
        self.load_program(name, bytes).map_err(fail)
    }

    fn load_program(&self, name: &str, bytes: &[u8]) -> Result<Program, LoadErrorKind> {
        let binary;
        let bytes = match wasm_kind(bytes) {
            Some(_) => bytes,
            None => {
                let text =
                    std::str::from_utf8(bytes).map_err(|_| LoadErrorKind::NotWasm("no `\\0asm` header".into()))?;
                binary =
                    wat::parse_str(text).map_err(|e| LoadErrorKind::NotWasm(format!("not WAT text either: {e}")))?;
                &binary[..]
            }
        };
        let engine = &self.inner.engine;
        let describe = |e: wasmtime::Error| format!("{e:#}");
        let kind = match wasm_kind(bytes) {
            Some(WasmKind::Module) => {
                let module = Module::new(engine, bytes).map_err(|e| LoadErrorKind::Invalid(describe(e)))?;
                if !matches!(module.get_export("_start"), Some(wasmtime::ExternType::Func(_))) {
                    return Err(LoadErrorKind::NotCommand(
                        "the module exports no `_start` function; build it as a command (a `bin` target for wasm32-wasip1), not a library or reactor".into(),
                    ));
                }
                let pre = self
                    .inner
                    .p1_linker
                    .instantiate_pre(&module)
                    .map_err(|e| LoadErrorKind::Link(describe(e)))?;
                ProgramKind::Module(pre)
            }
            Some(WasmKind::Component) => {
                let component = Component::new(engine, bytes).map_err(|e| LoadErrorKind::Invalid(describe(e)))?;
                let pre = self
                    .inner
                    .p2_linker
                    .instantiate_pre(&component)
                    .map_err(|e| LoadErrorKind::Link(describe(e)))?;
                let pre = CommandPre::new(pre).map_err(|e| {
                    LoadErrorKind::NotCommand(format!(
                        "the component is not a WASI command ({}); build it for wasm32-wasip2 as a `bin` target so that it exports wasi:cli/run",
                        describe(e)
                    ))
                })?;
                ProgramKind::Component(pre)
            }
            None => return Err(LoadErrorKind::NotWasm("unknown WebAssembly version".into())),
        };
        Ok(Program {
            name: name.to_string(),
            kind,
        })
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
    ///
    /// Do not call this from inside a tokio runtime; use
    /// [`Sandbox::run_program_async`] there.
    ///
    /// # Errors
    ///
    /// Only when the sandbox itself fails, for example when a host directory
    /// granted by the policy can no longer be opened.
    pub fn run_program(&self, program: &Program, args: &[impl AsRef<str>]) -> Result<Outcome> {
        self.runtime()?.block_on(self.run_program_async(program, args))
    }

    /// Like [`Sandbox::run_program`], for hosts that run on tokio. The caller's
    /// runtime must have the time driver enabled.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::run_program`].
    pub async fn run_program_async(&self, program: &Program, args: &[impl AsRef<str>]) -> Result<Outcome> {
        let inner = &*self.inner;
        let policy = &inner.policy;
        let mut argv = vec![program.name.clone()];
        argv.extend(args.iter().map(|a| a.as_ref().to_string()));
        let budget = Arc::new(OutputBudget::new(policy.limits.output.value));
        let captured = Captured::default();
        let builder = policy.wasi_builder(&argv, &inner.io, &budget, &captured)?;

        // Limits are armed before instantiation: a start function can loop,
        // and the declared minimum memory already goes through the limiter.
        let start = Instant::now();
        let deadline = start + policy.limits.timeout.value;
        let mut run = RunState {
            start,
            deadline,
            budget,
            captured,
        };
        match &program.kind {
            ProgramKind::Module(pre) => {
                let mut wasi = builder;
                let mut store = self.new_store(wasi.build_p1(), deadline)?;
                let result = run.race(run_module(pre, &mut store)).await;
                Ok(self.finish(&mut store, result, &mut run))
            }
            ProgramKind::Component(pre) => {
                let mut wasi = builder;
                let ctx = P2Ctx {
                    ctx: wasi.build(),
                    table: ResourceTable::new(),
                };
                let mut store = self.new_store(ctx, deadline)?;
                let result = run.race(run_component(pre, &mut store)).await;
                Ok(self.finish(&mut store, result, &mut run))
            }
        }
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        if let Some(rt) = self.inner.runtime.get() {
            return Ok(rt);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wasmcell-io")
            .enable_all()
            .build()
            .context("failed to start the sandbox's I/O runtime")?;
        Ok(self.inner.runtime.get_or_init(|| rt))
    }

    fn new_store<W: Send + 'static>(&self, wasi: W, deadline: Instant) -> Result<Store<State<W>>> {
        let limits = &self.inner.policy.limits;
        let state = State {
            wasi,
            limiter: MemoryLimiter::new(limits.memory.value),
            deadline,
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        if let Some(fuel) = limits.fuel.value {
            store
                .set_fuel(fuel)
                .map_err(anyhow::Error::from)
                .context("failed to set fuel")?;
        }
        // Checked at every epoch tick while the guest computes. Yielding lets
        // the runner's timer (and other runs on the same executor) make
        // progress; the deadline check stops a guest that never calls out.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::new(LimitExceeded::Timeout))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    fn finish<W>(
        &self,
        store: &mut Store<State<W>>,
        result: Option<wasmtime::Result<i32>>,
        run: &mut RunState,
    ) -> Outcome {
        let wall = run.start.elapsed();
        let limiter = &store.data().limiter;
        let (status, trap) = outcome::classify(Ending {
            result: result.as_ref(),
            memory_refused: limiter.refused().is_some(),
            output_exceeded: run.budget.exceeded(),
        });
        let peak_memory_bytes = limiter.peak();
        let fuel_used = self
            .inner
            .policy
            .limits
            .fuel
            .value
            .map(|total| total.saturating_sub(store.get_fuel().unwrap_or(0)));
        let take = |b: &std::sync::Mutex<Vec<u8>>| std::mem::take(&mut *b.lock().unwrap_or_else(|e| e.into_inner()));
        Outcome {
            status,
            trap,
            fuel_used,
            wall,
            peak_memory_bytes,
            stdout_bytes: run.budget.stdout_bytes(),
            stderr_bytes: run.budget.stderr_bytes(),
            stdout: take(&run.captured.stdout),
            stderr: take(&run.captured.stderr),
            denials: Vec::new(),
        }
    }
}

/// What one run tracks outside its store.
struct RunState {
    start: Instant,
    deadline: Instant,
    budget: Arc<OutputBudget>,
    captured: Captured,
}

impl RunState {
    /// Runs `guest` until it ends or the deadline passes. The epoch callback
    /// catches a guest that computes past the deadline; this timer catches one
    /// blocked in a host call (sleeping, reading stdin), which never reaches
    /// an epoch check. Dropping the guest's future unwinds it cleanly.
    async fn race(
        &mut self,
        guest: impl std::future::Future<Output = wasmtime::Result<i32>>,
    ) -> Option<wasmtime::Result<i32>> {
        tokio::time::timeout_at(self.deadline.into(), guest).await.ok()
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WasmKind {
    Module,
    Component,
}

fn wasm_kind(bytes: &[u8]) -> Option<WasmKind> {
    let header = bytes.get(..8)?;
    if &header[..4] != b"\0asm" {
        return None;
    }
    match header[4..8] {
        [1, 0, 0, 0] => Some(WasmKind::Module),
        [0x0d, 0, 1, 0] => Some(WasmKind::Component),
        _ => None,
    }
}

/// The Wasm proposals guests built for wasm32-wasip1 and wasm32-wasip2 use.
/// Everything else is off, so a guest cannot reach less-tested compiler and
/// runtime paths (GC, exceptions, threads, stack switching, ...).
pub const ENABLED_PROPOSALS: &[&str] = &[
    "mutable-globals",
    "sign-extension",
    "nontrapping-float-to-int",
    "multi-value",
    "bulk-memory",
    "reference-types",
    "simd",
    "component-model",
];

fn new_engine(policy: &Policy) -> Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_shared_everything_threads(false)
        .wasm_gc(false)
        .wasm_stack_switching(false)
        .wasm_tail_call(false)
        .wasm_memory64(false)
        .wasm_multi_memory(false)
        .wasm_custom_page_sizes(false)
        .wasm_wide_arithmetic(false)
        .wasm_extended_const(false)
        .wasm_relaxed_simd(false)
        .wasm_branch_hinting(false)
        .wasm_simd(true)
        .wasm_bulk_memory(true)
        .wasm_multi_value(true)
        .wasm_component_model(true);
    limits::configure_engine(&mut config, &policy.limits);
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("failed to configure the WebAssembly engine")
}

fn new_p1_linker(engine: &Engine) -> Result<wasmtime::Linker<State<WasiP1Ctx>>> {
    let mut linker = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut State<WasiP1Ctx>| &mut s.wasi)
        .map_err(anyhow::Error::from)?;
    // wasmtime-wasi turns an exit status of 126 or more into an untyped error;
    // report every status as what it is, so the outcome can say "exited 200"
    // rather than mistaking it for a trap.
    linker.allow_shadowing(true);
    linker
        .func_wrap(
            "wasi_snapshot_preview1",
            "proc_exit",
            |status: i32| -> wasmtime::Result<()> { Err(wasmtime::Error::new(I32Exit(status))) },
        )
        .map_err(anyhow::Error::from)?;
    linker.allow_shadowing(false);
    Ok(linker)
}

fn new_p2_linker(engine: &Engine) -> Result<wasmtime::component::Linker<State<P2Ctx>>> {
    let mut linker = wasmtime::component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
    Ok(linker)
}

/// Advances the engine's epoch every [`limits::EPOCH_TICK`] so that running
/// guests reach their deadline check.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("wasmcell-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(limits::EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .context("failed to start the epoch thread")?;
        Ok(EpochTicker { stop })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_modules_and_components() {
        assert_eq!(wasm_kind(b"\0asm\x01\0\0\0"), Some(WasmKind::Module));
        assert_eq!(wasm_kind(b"\0asm\x0d\0\x01\0"), Some(WasmKind::Component));
        assert_eq!(wasm_kind(b"\0asm\x02\0\0\0"), None);
        assert_eq!(wasm_kind(b"\0asm"), None);
        assert_eq!(wasm_kind(b"#!/bin/sh\n"), None);
    }
}
