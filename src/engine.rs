//! The shared engine: wasmtime configuration, WASI linkers, the epoch ticker,
//! and compiling guests into [`Program`]s that any sandbox on the same engine
//! can run.

use crate::capabilities::NetAudit;
use crate::limits::{self, MemoryLimiter};
use crate::policy::{ByteSize, Policy};
use anyhow::{Context as _, Result};
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
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
/// fixes when it compiles code, so every sandbox on one engine shares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Compile fuel metering in. Required by policies that set `limits.fuel`;
    /// costs some speed for policies that do not.
    pub fuel: bool,
    /// Wasm stack size in bytes (`limits.stack`).
    pub stack: u64,
}

impl EngineConfig {
    /// The configuration a policy needs: fuel only when it meters fuel.
    pub fn for_policy(policy: &Policy) -> EngineConfig {
        EngineConfig {
            fuel: policy.limits.fuel.value.is_some(),
            stack: policy.limits.stack.value,
        }
    }

    /// Why `policy` cannot run on an engine with this configuration, if it cannot.
    pub(crate) fn mismatch(&self, policy: &Policy) -> Option<String> {
        if policy.limits.fuel.value.is_some() && !self.fuel {
            return Some("the policy meters fuel but the engine was built without fuel metering; create the engine with `fuel: true`".into());
        }
        if policy.limits.stack.value != self.stack {
            return Some(format!(
                "the policy's limits.stack is {} but the engine's stack is {}; use an engine per stack size",
                ByteSize(policy.limits.stack.value),
                ByteSize(self.stack)
            ));
        }
        None
    }
}

/// Compiles guests and holds what every run on it shares: the wasmtime
/// engine, the WASI linkers, the epoch ticker and an I/O runtime.
///
/// `Engine` is `Send + Sync` and cheap to clone (a reference count). Build one
/// per [`EngineConfig`] and share it between sandboxes whose policies fit it;
/// a [`Program`] compiled on an engine runs in any sandbox on that engine.
///
/// # Example
///
/// ```no_run
/// use wasmcell::{Engine, EngineConfig, Policy, Sandbox};
///
/// let engine = Engine::new(EngineConfig { fuel: true, stack: 1 << 20 })?;
/// let program = engine.load("hello.wasm", 64 << 20)?;
/// for policy in ["policies/deny-all.toml", "policies/tight.toml"] {
///     let sandbox = Sandbox::builder().engine(engine.clone()).policy(Policy::from_file(policy)?).build()?;
///     println!("{:?}", sandbox.run_program(&program, &[] as &[&str])?.status);
/// }
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
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Engine {
    /// Creates an engine with the Wasm proposals listed in
    /// [`ENABLED_PROPOSALS`] and nothing else.
    ///
    /// # Errors
    ///
    /// When wasmtime rejects the configuration (for example an unusable stack
    /// size) or a thread cannot be started.
    pub fn new(config: EngineConfig) -> Result<Engine> {
        let wasmtime = new_wasmtime_engine(&config)?;
        let p1_linker = new_p1_linker(&wasmtime)?;
        let p2_linker = new_p2_linker(&wasmtime)?;
        let ticker_stop = start_epoch_ticker(&wasmtime)?;
        Ok(Engine {
            inner: Arc::new(EngineInner {
                wasmtime,
                config,
                p1_linker,
                p2_linker,
                runtime: OnceLock::new(),
                ticker_stop,
            }),
        })
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

    /// Reads, compiles and links a module (`wasm32-wasip1`) or component
    /// (`wasm32-wasip2`, command world), refusing files over `max_size` bytes.
    /// Which kind it is comes from the file's header; WAT text is accepted.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] when the file is unreadable, too large, not
    /// WebAssembly, invalid, imports anything but WASI, or is not a command.
    pub fn load(&self, path: impl AsRef<Path>, max_size: u64) -> Result<Program, LoadError> {
        self.load_file(path.as_ref(), max_size, "the engine's load limit")
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
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.compile(&name, &bytes).map_err(fail)
    }

    /// Compiles and links bytes already in memory; `name` becomes the guest's
    /// `argv[0]`.
    pub(crate) fn compile(&self, name: &str, bytes: &[u8]) -> Result<Program, LoadErrorKind> {
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
            size: bytes.len() as u64,
            kind,
        })
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

/// A module or component compiled and linked against WASI, ready to run many
/// times in any sandbox on the engine that compiled it.
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

    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match &self.kind {
            ProgramKind::Module(pre) => pre.module().engine(),
            ProgramKind::Component(pre) => pre.engine(),
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
    pub(crate) wasi: W,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) deadline: Instant,
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
                    let rule = "[net] dns is false: name lookups are not granted".to_string();
                    p2.net.refuse("dns", name, rule);
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
        let mut policy = Policy::deny_all();
        let config = EngineConfig::for_policy(&policy);
        assert_eq!(config.mismatch(&policy), None);
        policy.set_fuel(10, "--fuel").unwrap();
        assert!(config.mismatch(&policy).unwrap().contains("fuel"));
        let metered = EngineConfig { fuel: true, ..config };
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
