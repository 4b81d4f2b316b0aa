//! The shared engine: wasmtime configuration, WASI linkers, the epoch ticker,
//! and compiling guests into [`Program`]s that any sandbox on the same engine
//! can run.

use crate::cache::{self, CacheStats, ContentHash, Counters, DiskCache, MemoryCache};
use crate::capabilities::NetAudit;
use crate::limits::{self, MemoryLimiter};
use crate::policy::{ByteSize, Policy};
use anyhow::{Context as _, Result};
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;
use wasmtime::StoreContextMut;
use wasmtime::component::{Component, Resource, ResourceTable};
use wasmtime::{Config, InstancePre, Module, WasmFeatures};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::sockets::WasiSocketsCtxView;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The engine-wide settings: the parts of a policy's limits that wasmtime
/// fixes when it compiles code, and how instances are allocated. Every
/// sandbox on one engine shares them.
///
/// # Example
///
/// ```
/// use wasmcell::{Allocator, EngineConfig, PoolingConfig, Policy};
///
/// // What `Sandbox::builder()` picks for a policy on its own:
/// let config = EngineConfig::for_policy(&Policy::deny_all());
/// assert_eq!(config, EngineConfig::default());
/// assert!(!config.fuel);
///
/// // A job runner's engine: fuel metering for policies that set
/// // `limits.fuel`, and a pool of 200 concurrent runs.
/// let config = EngineConfig {
///     fuel: true,
///     allocator: Allocator::Pooling(PoolingConfig::new(200)),
///     ..EngineConfig::default()
/// };
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EngineConfig {
    /// Compile fuel metering in. Required by policies that set `limits.fuel`.
    /// Off by default: on CPU-bound guests it adds 0 to 17 percent on top of
    /// the epoch checks every engine has (those cost about 1.6x unmetered
    /// code; see the README's metering figures), which policies without
    /// `limits.fuel` need not pay.
    pub fuel: bool,
    /// Wasm stack size in bytes (`limits.stack`, 1 MiB by default).
    pub stack: u64,
    /// How instances, memories and fiber stacks are allocated.
    pub allocator: Allocator,
}

impl Default for EngineConfig {
    /// No fuel metering, the default `limits.stack`, and on-demand allocation.
    fn default() -> Self {
        EngineConfig::for_policy(&Policy::deny_all())
    }
}

/// How an engine allocates each run's instances, linear memories, tables and
/// the fiber stack the guest runs on.
///
/// - [`Allocator::OnDemand`] (the default) maps memory for each run and
///   unmaps it afterwards. Nothing is reserved up front, an engine costs
///   little, and a run may use up to its policy's `limits.memory`. Best for a
///   CLI run, a few runs, or many mostly idle sandboxes. Each run in flight
///   holds about 7 memory mappings, so Linux's default `vm.max_map_count`
///   (65530) caps a process at roughly 9,000 concurrent runs; raise that
///   sysctl for more.
/// - [`Allocator::Pooling`] reserves slots for `max_runs` concurrent runs
///   when the engine is created and reuses them: instantiation avoids
///   `mmap`/`munmap` and page-table churn, so short runs are markedly faster
///   and scale better across threads (see the README's benchmark figures).
///   The costs: about 8 GiB of *virtual* address space per run slot (each
///   memory slot keeps wasmtime's 4 GiB guard-region layout), a hard cap of
///   `max_runs` runs in flight (one more fails with an error rather than
///   waiting), each linear memory capped at `max_memory`, at most 4 tables
///   of at most 2^20 elements per core module, and resident memory kept
///   warm in recently used slots ([`PoolingConfig::keep_resident`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Allocator {
    /// Allocate per run.
    #[default]
    OnDemand,
    /// Reuse pre-reserved slots.
    Pooling(PoolingConfig),
}

/// Sizes of a pooling allocator; see [`Allocator::Pooling`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolingConfig {
    /// Most runs in flight on the engine at once.
    pub max_runs: u32,
    /// Most bytes of linear memory one memory may grow to. Policies whose
    /// `limits.memory` is larger cannot use the engine.
    pub max_memory: u64,
    /// Bytes at the start of each memory and table slot that are zeroed in
    /// place when a run ends, instead of handed back to the kernel and
    /// faulted in again by the next run. Handing pages back serializes
    /// threads on the kernel's page tables; keeping them resident is what
    /// lets short runs scale across cores (see the README's figures). The
    /// cost is resident memory: up to this much per memory and per table in
    /// each slot that has been used, only for pages a guest touched. 0 hands
    /// everything back.
    pub keep_resident: u64,
}

impl PoolingConfig {
    /// A pool for `max_runs` concurrent runs whose memories may grow to the
    /// default `limits.memory` (256 MiB), keeping 2 MiB of each slot's memory
    /// and table resident (a small Rust guest's whole working set).
    pub fn new(max_runs: u32) -> PoolingConfig {
        PoolingConfig {
            max_runs,
            max_memory: Policy::deny_all().limits().memory.value,
            keep_resident: 2 << 20,
        }
    }
}

impl EngineConfig {
    /// The configuration a policy needs: fuel only when it meters fuel, its
    /// stack size, and on-demand allocation.
    pub fn for_policy(policy: &Policy) -> EngineConfig {
        EngineConfig {
            fuel: policy.limits().fuel.value.is_some(),
            stack: policy.limits().stack.value,
            allocator: Allocator::OnDemand,
        }
    }

    /// Why `policy` cannot run on an engine with this configuration, if it cannot.
    pub(crate) fn mismatch(&self, policy: &Policy) -> Option<String> {
        if policy.limits().fuel.value.is_some() && !self.fuel {
            return Some("the policy meters fuel but the engine was built without fuel metering; create the engine with `fuel: true`".into());
        }
        if let Allocator::Pooling(pool) = self.allocator
            && policy.limits().memory.value > pool.max_memory
        {
            return Some(format!(
                "the policy's limits.memory is {} but the engine's pool slots hold {}; raise PoolingConfig::max_memory",
                ByteSize(policy.limits().memory.value),
                ByteSize(pool.max_memory)
            ));
        }
        if policy.limits().stack.value != self.stack {
            return Some(format!(
                "the policy's limits.stack is {} but the engine's stack is {}; use an engine per stack size",
                ByteSize(policy.limits().stack.value),
                ByteSize(self.stack)
            ));
        }
        None
    }
}

/// Compiles guests and holds what every run on it shares: the wasmtime
/// engine, the WASI linkers, the epoch ticker, an I/O runtime and the compile
/// caches.
///
/// `Engine` is `Send + Sync` and cheap to clone (a reference count). Build one
/// per [`EngineConfig`] and share it between sandboxes whose policies fit it;
/// a [`Program`] compiled on an engine runs in any sandbox on that engine,
/// from any number of threads at once.
///
/// Each guest is compiled once per engine: loads are cached in memory by the
/// SHA-256 of the guest's bytes (up to [`MEMORY_CACHE_CAPACITY`](crate::MEMORY_CACHE_CAPACITY) programs),
/// and an engine made with [`Engine::with_disk_cache`] also keeps the native
/// code on disk, so the next process skips compilation too.
///
/// # Example
///
/// ```
/// use wasmcell::{Engine, EngineConfig, Policy, Sandbox, Status};
///
/// let engine = Engine::new(EngineConfig { fuel: true, ..EngineConfig::default() })?;
/// let guest = r#"(module
///     (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
///     (memory (export "memory") 1)
///     (func (export "_start") (call $exit (i32.const 7))))"#;
/// let program = engine.load_bytes("exit7.wasm", guest.as_bytes())?;
/// let again = engine.load_bytes("exit7.wasm", guest.as_bytes())?;
/// assert_eq!(engine.cache_stats().compiled, 1, "the second load hit the cache");
///
/// for policy in [Policy::deny_all(), Policy::from_toml("[limits]\nfuel = 1000", ".")?] {
///     let sandbox = Sandbox::builder().engine(engine.clone()).policy(policy).build()?;
///     assert_eq!(sandbox.run_program(&again, &[] as &[&str])?.status, Status::Exited(7));
/// }
/// # let _ = program;
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    wasmtime: wasmtime::Engine,
    config: EngineConfig,
    p1_linker: wasmtime::Linker<State<WasiP1Ctx>>,
    p2_linker: wasmtime::component::Linker<State<P2Ctx>>,
    runtime: OnceLock<tokio::runtime::Runtime>,
    ticker_stop: Arc<AtomicBool>,
    programs: MemoryCache<ProgramKind>,
    disk: Option<(DiskCache, String)>,
    counters: Counters,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Engine {
    /// Creates an engine with the Wasm proposals listed in
    /// [`ENABLED_PROPOSALS`] and nothing else, and no disk cache.
    ///
    /// # Errors
    ///
    /// When wasmtime rejects the configuration (for example an unusable stack
    /// size, or a pool too large to reserve) or a thread cannot be started.
    pub fn new(config: EngineConfig) -> Result<Engine> {
        Engine::build(config, None)
    }

    /// Like [`Engine::new`], keeping compiled code in `cache` as well, so
    /// that other engines with the same configuration (in this process or
    /// the next) load it without compiling.
    ///
    /// # Errors
    ///
    /// As [`Engine::new`].
    pub fn with_disk_cache(config: EngineConfig, cache: DiskCache) -> Result<Engine> {
        Engine::build(config, Some(cache))
    }

    fn build(config: EngineConfig, disk: Option<DiskCache>) -> Result<Engine> {
        let wasmtime = new_wasmtime_engine(&config)?;
        let p1_linker = new_p1_linker(&wasmtime)?;
        let p2_linker = new_p2_linker(&wasmtime)?;
        let ticker_stop = start_epoch_ticker(&wasmtime)?;
        let disk = disk.map(|cache| (cache, cache::engine_key(&wasmtime)));
        Ok(Engine {
            inner: Arc::new(EngineInner {
                wasmtime,
                config,
                p1_linker,
                p2_linker,
                runtime: OnceLock::new(),
                ticker_stop,
                programs: MemoryCache::new(),
                disk,
                counters: Counters::default(),
            }),
        })
    }

    /// The process-wide engine for `config`, created on first use and shared
    /// by every caller asking for the same configuration while any of them
    /// holds it. [`Sandbox::builder`](crate::Sandbox::builder) uses this when
    /// it is given no engine, so sandboxes built separately still compile
    /// each guest once and share one epoch thread and I/O runtime.
    ///
    /// # Errors
    ///
    /// As [`Engine::new`].
    pub fn shared(config: EngineConfig) -> Result<Engine> {
        static SHARED: Mutex<Vec<(EngineConfig, Weak<EngineInner>)>> = Mutex::new(Vec::new());
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        shared.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(inner) = shared
            .iter()
            .find(|(c, _)| *c == config)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(Engine { inner });
        }
        let engine = Engine::new(config)?;
        shared.push((config, Arc::downgrade(&engine.inner)));
        Ok(engine)
    }

    /// An engine configured for `policy` ([`EngineConfig::for_policy`]).
    ///
    /// # Errors
    ///
    /// As [`Engine::new`].
    pub fn for_policy(policy: &Policy) -> Result<Engine> {
        Engine::new(EngineConfig::for_policy(policy))
    }

    /// The engine's configuration.
    pub fn config(&self) -> EngineConfig {
        self.inner.config
    }

    /// The disk cache compiled code is kept in, if any.
    pub fn disk_cache(&self) -> Option<&DiskCache> {
        self.inner.disk.as_ref().map(|(cache, _)| cache)
    }

    /// How this engine's loads were answered so far.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    /// Reads, compiles and links a module (`wasm32-wasip1`) or component
    /// (`wasm32-wasip2`, command world), refusing files over `max_size` bytes.
    /// Which kind it is comes from the file's header; WAT text is accepted.
    /// Precompiled `.cwasm` files are refused: see [`Engine::load_precompiled`].
    ///
    /// # Errors
    ///
    /// A [`LoadError`] when the file is unreadable, too large, not
    /// WebAssembly, invalid, imports anything but WASI, or is not a command.
    pub fn load(&self, path: impl AsRef<Path>, max_size: u64) -> Result<Program, LoadError> {
        self.load_file(path.as_ref(), max_size, "the engine's load limit")
    }

    /// Compiles and links a guest already in memory (binary or WAT); `name`
    /// becomes the guest's `argv[0]`.
    ///
    /// # Errors
    ///
    /// As [`Engine::load`], except that there is no size limit.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Program, LoadError> {
        self.compile(name, bytes).map_err(|kind| LoadError {
            module: name.into(),
            kind,
        })
    }

    /// Loads native code precompiled by [`Program::precompile`] or
    /// `wasmcell compile`, for an engine with this configuration and the same
    /// wasmtime version.
    ///
    /// # Safety
    ///
    /// wasmtime maps the file's code and runs it without validation: a file
    /// that was not produced by wasmtime (or was changed since) can do
    /// anything the host process can. Only load files you compiled yourself
    /// and kept where nobody else could write them.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] when the file is unreadable, not precompiled code,
    /// compiled for another engine configuration, or not a WASI command.
    pub unsafe fn load_precompiled(&self, path: impl AsRef<Path>) -> Result<Program, LoadError> {
        let path = path.as_ref();
        let fail = |kind| LoadError {
            module: path.to_path_buf(),
            kind,
        };
        let size = std::fs::metadata(path).map_err(|e| fail(LoadErrorKind::Read(e)))?.len();
        // SAFETY: the caller vouches for the file.
        let kind = unsafe { self.deserialize(path) }.map_err(fail)?;
        Ok(Program {
            name: file_name(path),
            size,
            kind,
        })
    }

    /// Compiled code from `path`, linked.
    ///
    /// # Safety
    ///
    /// As [`Engine::load_precompiled`].
    unsafe fn deserialize(&self, path: &Path) -> Result<ProgramKind, LoadErrorKind> {
        let engine = &self.inner.wasmtime;
        let mismatch = |e: wasmtime::Error| {
            LoadErrorKind::Precompiled(format!(
                "{e:#}; it was compiled for another engine configuration (fuel metering, stack size, allocator or wasmtime version): compile it again with `wasmcell compile` and the policy you run it with"
            ))
        };
        let kind = wasmtime::Engine::detect_precompiled_file(path)
            .map_err(|e| LoadErrorKind::Read(std::io::Error::other(format!("{e:#}"))))?;
        match kind {
            // SAFETY: as the caller promised for the function.
            Some(wasmtime::Precompiled::Module) => {
                self.link_module(unsafe { Module::deserialize_file(engine, path) }.map_err(mismatch)?)
            }
            Some(wasmtime::Precompiled::Component) => {
                self.link_component(unsafe { Component::deserialize_file(engine, path) }.map_err(mismatch)?)
            }
            None => Err(LoadErrorKind::Precompiled(
                "not precompiled wasmtime code; load WebAssembly with `load`".into(),
            )),
        }
    }

    pub(crate) fn load_file(&self, path: &Path, max_size: u64, origin: &str) -> Result<Program, LoadError> {
        let fail = |kind| LoadError {
            module: path.to_path_buf(),
            kind,
        };
        let too_large = |size| {
            fail(LoadErrorKind::TooLarge {
                size,
                limit: max_size,
                origin: origin.to_string(),
            })
        };
        let file = std::fs::File::open(path).map_err(|e| fail(LoadErrorKind::Read(e)))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size > max_size {
            return Err(too_large(size));
        }
        // The file can grow between the check and the read; reading at most
        // one byte past the limit keeps that from slipping through.
        let mut bytes = Vec::new();
        file.take(max_size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| fail(LoadErrorKind::Read(e)))?;
        if bytes.len() as u64 > max_size {
            return Err(too_large(bytes.len() as u64));
        }
        self.compile(&file_name(path), &bytes).map_err(fail)
    }

    /// Compiles and links bytes already in memory, through the caches.
    pub(crate) fn compile(&self, name: &str, bytes: &[u8]) -> Result<Program, LoadErrorKind> {
        if wasmtime::Engine::detect_precompiled(bytes).is_some() {
            return Err(LoadErrorKind::Precompiled(
                "this is precompiled native code (a .cwasm), which is not validated like WebAssembly; run it only if you compiled it yourself, with --allow-precompiled (or `Engine::load_precompiled`)".into(),
            ));
        }
        let hash = cache::content_hash(bytes);
        let mut fresh = false;
        let kind = self.inner.programs.get_or_try_insert(hash, || {
            fresh = true;
            self.compile_uncached(&hash, bytes)
        })?;
        if !fresh {
            Counters::bump(&self.inner.counters.memory_hits);
        }
        Ok(Program {
            name: name.to_string(),
            size: bytes.len() as u64,
            kind,
        })
    }

    /// The disk cache's copy of the guest if there is a good one, otherwise a
    /// fresh compile, stored to the disk cache.
    fn compile_uncached(&self, hash: &ContentHash, bytes: &[u8]) -> Result<ProgramKind, LoadErrorKind> {
        let counters = &self.inner.counters;
        let entry = self
            .inner
            .disk
            .as_ref()
            .map(|(cache, key)| (cache, cache.entry(hash, key)));
        if let Some((_, path)) = &entry {
            match DiskCache::trusted(path) {
                Ok(false) => {}
                Ok(true) => {
                    // SAFETY: the entry is named by the hash of these very
                    // bytes and of this engine's configuration, and lives in
                    // a directory and file that only this user can write
                    // (checked by `DiskCache::open` and `trusted`): it is
                    // code this user's wasmcell compiled from these bytes.
                    match unsafe { self.deserialize(path) } {
                        Ok(kind) => {
                            Counters::bump(&counters.disk_hits);
                            return Ok(kind);
                        }
                        Err(_) => Counters::bump(&counters.disk_errors),
                    }
                }
                Err(_) => Counters::bump(&counters.disk_errors),
            }
        }
        Counters::bump(&counters.compiled);
        let kind = self.compile_wasm(bytes)?;
        if let Some((cache, path)) = &entry {
            let stored = ProgramKind::serialize(&kind)
                .map_err(|e| std::io::Error::other(format!("{e:#}")))
                .and_then(|code| cache.store(path, &code));
            if stored.is_err() {
                Counters::bump(&counters.disk_errors);
            }
        }
        Ok(kind)
    }

    fn compile_wasm(&self, bytes: &[u8]) -> Result<ProgramKind, LoadErrorKind> {
        let text_binary;
        let bytes = match wasm_kind(bytes) {
            Some(_) => bytes,
            None => {
                let text =
                    std::str::from_utf8(bytes).map_err(|_| LoadErrorKind::NotWasm("no `\\0asm` header".into()))?;
                text_binary =
                    wat::parse_str(text).map_err(|e| LoadErrorKind::NotWasm(format!("not WAT text either: {e}")))?;
                &text_binary[..]
            }
        };
        let engine = &self.inner.wasmtime;
        match wasm_kind(bytes) {
            Some(WasmKind::Module) => {
                self.link_module(Module::new(engine, bytes).map_err(|e| LoadErrorKind::Invalid(describe(e)))?)
            }
            Some(WasmKind::Component) => {
                self.link_component(Component::new(engine, bytes).map_err(|e| LoadErrorKind::Invalid(describe(e)))?)
            }
            None => Err(LoadErrorKind::NotWasm("unknown WebAssembly version".into())),
        }
    }

    fn link_module(&self, module: Module) -> Result<ProgramKind, LoadErrorKind> {
        let Some(wasmtime::ExternType::Func(start)) = module.get_export("_start") else {
            return Err(LoadErrorKind::NotCommand(
                "the module exports no `_start` function; build it as a command (a `bin` target for wasm32-wasip1), not a library or reactor".into(),
            ));
        };
        // Checked now, not when the run calls it: a `_start` the runner
        // cannot call is a module that cannot run, not a guest that trapped.
        if start.params().len() != 0 || start.results().len() != 0 {
            return Err(LoadErrorKind::StartSignature {
                found: signature(&start),
            });
        }
        let pre = self
            .inner
            .p1_linker
            .instantiate_pre(&module)
            .map_err(|e| LoadErrorKind::Link(describe(e)))?;
        Ok(ProgramKind::Module(pre))
    }

    fn link_component(&self, component: Component) -> Result<ProgramKind, LoadErrorKind> {
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
        Ok(ProgramKind::Component(pre))
    }

    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.wasmtime
    }

    /// The runtime blocking runs are driven on, started on first use.
    pub(crate) fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
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
}

/// A function type as WAT-like text: `(i32, i64) -> (f32)`.
fn signature(ty: &wasmtime::FuncType) -> String {
    let list = |types: &mut dyn Iterator<Item = wasmtime::ValType>| {
        types.map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
    };
    format!("({}) -> ({})", list(&mut ty.params()), list(&mut ty.results()))
}

fn describe(e: wasmtime::Error) -> String {
    format!("{e:#}")
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A module or component compiled and linked against WASI, ready to run many
/// times in any sandbox on the engine that compiled it. Cloning is cheap
/// (reference counts) and a program may run on many threads at once.
///
/// # Example
///
/// Precompiling for a machine you control, and loading the code there:
///
/// ```
/// use wasmcell::{Engine, EngineConfig, Policy, Sandbox, Status};
///
/// let engine = Engine::new(EngineConfig::default())?;
/// let program = engine.load_bytes("noop.wasm", br#"(module (func (export "_start")))"#)?;
/// assert!(!program.is_component());
/// let dir = tempfile::tempdir()?;
/// let cwasm = dir.path().join("noop.cwasm");
/// std::fs::write(&cwasm, program.precompile()?)?;
///
/// // Refused as WebAssembly ...
/// assert!(engine.load(&cwasm, 1 << 20).is_err());
/// // ... loaded only by the call that says what it is.
/// // SAFETY: written by this program a moment ago, in a private temp dir.
/// let loaded = unsafe { engine.load_precompiled(&cwasm)? };
/// let sandbox = Sandbox::builder().engine(engine).policy(Policy::deny_all()).build()?;
/// assert_eq!(sandbox.run_program(&loaded, &[] as &[&str])?.status, Status::Exited(0));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Clone)]
pub struct Program {
    name: String,
    size: u64,
    pub(crate) kind: ProgramKind,
}

#[derive(Clone)]
pub(crate) enum ProgramKind {
    Module(InstancePre<State<WasiP1Ctx>>),
    Component(CommandPre<State<P2Ctx>>),
}

impl Program {
    /// The name the guest sees as `argv[0]`: the file name it was loaded from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in bytes of the binary it was compiled from.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether this is a component (`wasm32-wasip2`) rather than a core
    /// module (`wasm32-wasip1`).
    pub fn is_component(&self) -> bool {
        matches!(self.kind, ProgramKind::Component(_))
    }

    /// The program as precompiled native code, as `wasmcell compile` writes
    /// it; [`Engine::load_precompiled`] loads it into an engine with the same
    /// configuration.
    ///
    /// # Errors
    ///
    /// When wasmtime cannot serialize the code (it always can for programs it
    /// compiled).
    pub fn precompile(&self) -> Result<Vec<u8>> {
        self.kind.serialize().map_err(anyhow::Error::from)
    }

    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match &self.kind {
            ProgramKind::Module(pre) => pre.module().engine(),
            ProgramKind::Component(pre) => pre.engine(),
        }
    }
}

impl ProgramKind {
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            ProgramKind::Module(pre) => pre.module().serialize(),
            ProgramKind::Component(pre) => pre.instance_pre().component().serialize(),
        }
    }
}

/// A module or component that could not be loaded or linked. Nothing ran.
#[derive(Debug)]
pub struct LoadError {
    pub(crate) module: PathBuf,
    pub(crate) kind: LoadErrorKind,
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
    /// The module's `_start` takes parameters or returns results; a WASI
    /// command's `_start` is `() -> ()`.
    StartSignature {
        /// The type the module gives `_start`, such as `(i32) -> ()`.
        found: String,
    },
    /// Precompiled native code given where WebAssembly was expected, or
    /// precompiled code that does not fit this engine.
    Precompiled(String),
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
            LoadErrorKind::NotCommand(why) | LoadErrorKind::Precompiled(why) => write!(f, "{why}"),
            LoadErrorKind::StartSignature { found } => write!(
                f,
                "`_start` has type `{found}`, but a command's `_start` takes no parameters and returns nothing (`() -> ()`); export it with that type, as a `bin` target for wasm32-wasip1 does"
            ),
        }
    }
}

/// The message already includes any I/O error, so it is not also given as a
/// `source` (that would print it twice in `{:#}` chains); match on
/// [`LoadError::kind`] to get at it.
impl std::error::Error for LoadError {}

/// Per-run store data: the guest's WASI context and its limiter.
pub(crate) struct State<W> {
    pub(crate) wasi: W,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) deadline: Instant,
    pub(crate) cancel: Option<crate::runner::CancelHandle>,
}

/// WASI 0.2 context for components.
pub(crate) struct P2Ctx {
    pub(crate) ctx: WasiCtx,
    pub(crate) table: ResourceTable,
    /// The run's network grants and refusal record, also the HTTP hook.
    pub(crate) net: NetAudit,
    pub(crate) http: WasiHttpCtx,
}

impl WasiHttpView for State<P2Ctx> {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let p2 = &mut self.wasi;
        WasiHttpCtxView {
            hooks: &mut p2.net,
            table: &mut p2.table,
            ctx: &mut p2.http,
        }
    }
}

impl WasiView for State<P2Ctx> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.wasi.table,
        }
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

/// Every proposal a `wasm32-wasip1`/`wasm32-wasip2` guest does not need,
/// switched off by flag so that none is left to a default. Threads, GC,
/// exceptions, stack switching and component-model async are not even
/// compiled into this build of wasmtime; the flags make the validator reject
/// modules that use them up front.
const DISABLED_PROPOSALS: WasmFeatures = WasmFeatures::THREADS
    .union(WasmFeatures::SHARED_EVERYTHING_THREADS)
    .union(WasmFeatures::GC)
    .union(WasmFeatures::FUNCTION_REFERENCES)
    .union(WasmFeatures::EXCEPTIONS)
    .union(WasmFeatures::LEGACY_EXCEPTIONS)
    .union(WasmFeatures::STACK_SWITCHING)
    .union(WasmFeatures::TAIL_CALL)
    .union(WasmFeatures::MEMORY64)
    .union(WasmFeatures::MULTI_MEMORY)
    .union(WasmFeatures::CUSTOM_PAGE_SIZES)
    .union(WasmFeatures::MEMORY_CONTROL)
    .union(WasmFeatures::WIDE_ARITHMETIC)
    .union(WasmFeatures::EXTENDED_CONST)
    .union(WasmFeatures::RELAXED_SIMD);

fn new_wasmtime_engine(config: &EngineConfig) -> Result<wasmtime::Engine> {
    let mut wasm = Config::new();
    wasm.wasm_features(DISABLED_PROPOSALS, false)
        .wasm_simd(true)
        .wasm_bulk_memory(true)
        .wasm_multi_value(true)
        .wasm_component_model(true);
    limits::configure_engine(&mut wasm, config);
    wasmtime::Engine::new(&wasm)
        .map_err(anyhow::Error::from)
        .context("failed to configure the WebAssembly engine")
}

fn new_p1_linker(engine: &wasmtime::Engine) -> Result<wasmtime::Linker<State<WasiP1Ctx>>> {
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

fn new_p2_linker(engine: &wasmtime::Engine) -> Result<wasmtime::component::Linker<State<P2Ctx>>> {
    let mut linker = wasmtime::component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
    audit_name_lookups(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
    Ok(linker)
}

/// The `wasi:sockets` version wasmtime-wasi 48 implements; guests importing
/// any compatible 0.2.x version link against it.
const WASI_SOCKETS: &str = "wasi:sockets/ip-name-lookup@0.2.12";

/// Replaces `resolve-addresses` with a version that records a refused lookup
/// in the run's denials (wasmtime-wasi refuses it silently) and otherwise
/// hands the call to wasmtime-wasi unchanged.
fn audit_name_lookups(linker: &mut wasmtime::component::Linker<State<P2Ctx>>) -> Result<()> {
    use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{Host, ResolveAddressStream};
    use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, Network};
    type Lookup = Result<Resource<ResolveAddressStream>, ErrorCode>;

    linker.allow_shadowing(true);
    linker
        .instance(WASI_SOCKETS)
        .map_err(anyhow::Error::from)?
        .func_wrap(
            "resolve-addresses",
            |mut store: StoreContextMut<'_, State<P2Ctx>>,
             (network, name): (Resource<Network>, String)|
             -> wasmtime::Result<(Lookup,)> {
                let p2 = &mut store.data_mut().wasi;
                if !p2.net.grants.dns {
                    p2.net
                        .refuse("dns", &name, "[net] dns is false: name lookups are not granted");
                    // What wasmtime-wasi itself answers when lookups are off.
                    return Ok((Err(ErrorCode::PermanentResolverFailure),));
                }
                let mut view = WasiSocketsCtxView {
                    ctx: p2.ctx.sockets(),
                    table: &mut p2.table,
                };
                match Host::resolve_addresses(&mut view, network, name) {
                    Ok(stream) => Ok((Ok(stream),)),
                    Err(err) => err.downcast().map(|code| (Err(code),)),
                }
            },
        )
        .map_err(anyhow::Error::from)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Advances the engine's epoch every [`limits::EPOCH_TICK`] so that running
/// guests reach their deadline check. Stops when the returned flag is set or
/// the engine is gone.
fn start_epoch_ticker(engine: &wasmtime::Engine) -> Result<Arc<AtomicBool>> {
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
    Ok(stop)
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

    #[test]
    fn engine_config_must_fit_the_policy() {
        let policy = Policy::deny_all();
        let config = EngineConfig::for_policy(&policy);
        assert_eq!(config.mismatch(&policy), None);
        let policy = Policy::builder().fuel(10).build().unwrap();
        assert!(config.mismatch(&policy).unwrap().contains("fuel"));
        let metered = EngineConfig { fuel: true, ..config };
        let pooled = EngineConfig {
            allocator: Allocator::Pooling(PoolingConfig {
                max_memory: 1 << 20,
                ..PoolingConfig::new(4)
            }),
            ..config
        };
        assert!(pooled.mismatch(&Policy::deny_all()).unwrap().contains("max_memory"));
        assert_eq!(
            metered.mismatch(&Policy::deny_all()),
            None,
            "a fuel engine also runs unmetered policies"
        );
        let deep = EngineConfig {
            stack: 8 << 20,
            ..config
        };
        assert!(deep.mismatch(&Policy::deny_all()).unwrap().contains("limits.stack"));
    }
}
