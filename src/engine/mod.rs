//! The shared engine: compiling guests into [`Program`]s that any sandbox on
//! the same engine can run, through the in-memory and on-disk caches.
//!
//! - `config`: [`EngineConfig`] and how it becomes wasmtime's `Config`;
//! - `program`: [`Program`], [`LoadError`] and telling modules from components;
//! - `linker`: the WASI linkers every program is linked with;
//! - `ticker`: the epoch thread and the I/O runtime.

mod config;
mod linker;
mod program;
mod ticker;

pub use config::{Allocator, ENABLED_PROPOSALS, EngineConfig, PoolingConfig};
pub(crate) use program::ProgramKind;
pub use program::{LoadError, LoadErrorKind, Program};

use crate::cache::{self, CacheStats, ContentHash, Counters, DiskCache, FileStamp, MemoryCache};
use crate::policy::Policy;
use crate::store::{P2Ctx, State};
use anyhow::Result;
use program::{WasmKind, describe, file_name, signature, wasm_kind};
use std::io::Read as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use wasmtime::Module;
use wasmtime::component::Component;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;

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
    // Built on first use, for the world a guest needs: a CLI run links one
    // guest, and the WASI 0.2 linker alone costs more than the rest of a
    // warm start (see the README's start-up figures).
    p1_linker: OnceLock<wasmtime::Linker<State<WasiP1Ctx>>>,
    p2_linker: OnceLock<wasmtime::component::Linker<State<P2Ctx>>>,
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
        let wasmtime = config::new_wasmtime_engine(&config)?;
        let ticker_stop = ticker::start_epoch_ticker(&wasmtime)?;
        let disk = disk.map(|cache| (cache, cache::engine_key(&wasmtime)));
        Ok(Engine {
            inner: Arc::new(EngineInner {
                wasmtime,
                config,
                p1_linker: OnceLock::new(),
                p2_linker: OnceLock::new(),
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
                "{e:#}; it was compiled for another engine configuration (fuel metering, stack size, allocator or wasmtime version): precompile it again (`Program::precompile`) on an engine with this configuration"
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
        let meta = file.metadata().map_err(|e| fail(LoadErrorKind::Read(e)))?;
        if meta.len() > max_size {
            return Err(too_large(meta.len()));
        }
        if let Some(program) = self.load_stamped(&meta, path) {
            return Ok(program);
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
        let hash = cache::content_hash(&bytes);
        let program = self.compile_hashed(&file_name(path), &bytes, hash).map_err(fail)?;
        if let Some((cache, _)) = &self.inner.disk {
            cache.record_hash(&meta, &hash);
        }
        Ok(program)
    }

    /// The program in the file `meta` describes, without reading the file,
    /// when the disk cache recorded which bytes it holds ([`DiskCache`]'s
    /// file stamps) and has their compiled code. `None` sends the load the
    /// long way: read, hash, compile or look up.
    fn load_stamped(&self, meta: &std::fs::Metadata, path: &Path) -> Option<Program> {
        let (cache, key) = self.inner.disk.as_ref()?;
        let hash = cache.hash_for(&FileStamp::of(meta)?)?;
        let mut fresh = false;
        let kind = self
            .inner
            .programs
            .get_or_try_insert(hash, || {
                fresh = true;
                let entry = cache.entry(&hash, key);
                if DiskCache::trusted(&entry) != Ok(true) {
                    return Err(());
                }
                // SAFETY: as in `compile_uncached`: the entry is named by the
                // hash of the bytes the stamp vouches for and by this
                // engine's configuration, in a directory only this user can
                // write. Were the stamp stale, this would still be code
                // wasmcell compiled from validated WebAssembly, only not the
                // file's latest version; the stamp's status-change time rules
                // that out.
                unsafe { self.deserialize(&entry) }.map_err(|_| ())
            })
            .ok()?;
        let counter = if fresh { &self.inner.counters.disk_hits } else { &self.inner.counters.memory_hits };
        Counters::bump(counter);
        Some(Program {
            name: file_name(path),
            size: meta.len(),
            kind,
        })
    }

    /// Compiles and links bytes already in memory, through the caches.
    pub(crate) fn compile(&self, name: &str, bytes: &[u8]) -> Result<Program, LoadErrorKind> {
        self.compile_hashed(name, bytes, cache::content_hash(bytes))
    }

    /// As [`Engine::compile`], for bytes whose content hash is `hash`.
    fn compile_hashed(&self, name: &str, bytes: &[u8], hash: ContentHash) -> Result<Program, LoadErrorKind> {
        if wasmtime::Engine::detect_precompiled(bytes).is_some() {
            return Err(LoadErrorKind::Precompiled(
                "this is precompiled native code (a .cwasm), which is not validated like WebAssembly; load it with `Engine::load_precompiled` only if you compiled it yourself".into(),
            ));
        }
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
        let linker = lazy_linker(&self.inner.p1_linker, || linker::new_p1_linker(&self.inner.wasmtime))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| LoadErrorKind::Link(describe(e)))?;
        Ok(ProgramKind::Module(pre))
    }

    fn link_component(&self, component: Component) -> Result<ProgramKind, LoadErrorKind> {
        let linker = lazy_linker(&self.inner.p2_linker, || linker::new_p2_linker(&self.inner.wasmtime))?;
        let pre = linker
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
        let rt = ticker::new_io_runtime()?;
        Ok(self.inner.runtime.get_or_init(|| rt))
    }
}

/// The linker in `cell`, made by `make` on first use. Two threads may both
/// make one; the first stored wins and the other is dropped.
fn lazy_linker<T>(cell: &OnceLock<T>, make: impl FnOnce() -> Result<T>) -> Result<&T, LoadErrorKind> {
    if let Some(linker) = cell.get() {
        return Ok(linker);
    }
    let linker = make().map_err(|e| LoadErrorKind::Link(format!("failed to set up the WASI linker: {e:#}")))?;
    Ok(cell.get_or_init(|| linker))
}
