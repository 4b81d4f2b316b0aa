//! The shared engine: compiling guests into [`Program`]s that any sandbox on
//! the same engine can run, through the in-memory and on-disk caches.
//!
//! - `config`: [`EngineConfig`] and how it becomes wasmtime's `Config`;
//! - `program`: [`Program`], [`LoadError`] and telling modules from components;
//! - `linker`: the WASI linkers every program is linked with;
//! - `imports`: a guest's imports checked against them before compiling,
//!   and linked as `[wasm] unknown-imports` says;
//! - `ticker`: the epoch thread and the I/O runtime.

mod admit;
mod config;
#[cfg(feature = "wall-drill")]
mod drill;
mod imports;
mod linker;
mod program;
mod shape;
mod ticker;
mod validate;

pub use config::{Allocator, ENABLED_PROPOSALS, EngineConfig, PoolingConfig};
pub(crate) use program::{Intent, ProgramKind, is_precompiled};
pub use program::{LoadError, LoadErrorKind, Program};

pub(crate) use admit::{Admit, Candidate, admit_any, admit_module, admit_program, check_pins_of, signers_of_file};

use crate::cache::{self, CacheStats, ContentHash, Counters, DiskCache, FileStamp, MemoryCache};
use crate::policy::Policy;
use crate::store::{P2Ctx, State};
use anyhow::Result;
use program::{Compiled, WasmKind, describe, file_name, signature, wasm_kind};
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
    /// This handle loads without the disk cache: a sandbox whose grants
    /// reach the cache folder ([`CacheInGrant`](crate::CacheInGrant)).
    skip_disk: bool,
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
    /// The epoch thread's stop flag, once the first run has started it. No
    /// thread runs before then, so a process that loads its guest and then
    /// confines itself (`crate::wall`) is still single-threaded when it does.
    ticker_stop: OnceLock<Arc<AtomicBool>>,
    /// Compiled code, before linking: a guest that compiles but fails to
    /// link is still compiled only once.
    programs: MemoryCache<Compiled>,
    disk: Option<(DiskCache, String)>,
    counters: Counters,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        if let Some(stop) = self.ticker_stop.get() {
            stop.store(true, Ordering::Relaxed);
        }
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
        let disk = disk.map(|cache| (cache, cache::engine_key(&wasmtime)));
        Ok(Engine {
            skip_disk: false,
            inner: Arc::new(EngineInner {
                wasmtime,
                config,
                p1_linker: OnceLock::new(),
                p2_linker: OnceLock::new(),
                runtime: OnceLock::new(),
                ticker_stop: OnceLock::new(),
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
            return Ok(Engine {
                inner,
                skip_disk: false,
            });
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

    /// The disk cache compiled code is kept in, if any. `None` too for the
    /// engine of a sandbox whose grants reach the cache
    /// ([`Sandbox::cache_in_grant`](crate::Sandbox::cache_in_grant)).
    pub fn disk_cache(&self) -> Option<&DiskCache> {
        self.disk().map(|(cache, _)| cache)
    }

    /// The disk cache and this engine's fingerprint, unless this handle
    /// skips it.
    fn disk(&self) -> Option<&(DiskCache, String)> {
        self.inner.disk.as_ref().filter(|_| !self.skip_disk)
    }

    /// This engine, sharing everything (programs already loaded included)
    /// but loading without the disk cache: for a run whose grants reach it.
    pub(crate) fn without_disk_cache(&self) -> Engine {
        Engine {
            inner: self.inner.clone(),
            skip_disk: true,
        }
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
        self.load_file(
            path.as_ref(),
            max_size,
            "the engine's load limit",
            Intent::Command,
            &admit_any,
        )
    }

    /// Like [`Engine::load`], for a guest whose exports are called rather
    /// than run as a command: a reactor or library module, or a component
    /// of any world. The program is instantiated with
    /// [`Sandbox::instantiate`](crate::Sandbox::instantiate), not run.
    ///
    /// # Errors
    ///
    /// As [`Engine::load`], except that the guest need not be a command.
    pub fn load_library(&self, path: impl AsRef<Path>, max_size: u64) -> Result<Program, LoadError> {
        self.load_file(
            path.as_ref(),
            max_size,
            "the engine's load limit",
            Intent::Library,
            &admit_any,
        )
    }

    /// Like [`Engine::load_library`], for a guest already in memory (binary
    /// or WAT).
    ///
    /// # Errors
    ///
    /// As [`Engine::load_library`], except that there is no size limit.
    pub fn load_library_bytes(&self, name: &str, bytes: &[u8]) -> Result<Program, LoadError> {
        self.compile(name, bytes, Intent::Library, &admit_any)
            .map_err(|kind| LoadError {
                module: name.into(),
                kind,
            })
    }

    /// Compiles and links a guest already in memory (binary or WAT); `name`
    /// becomes the guest's `argv[0]`.
    ///
    /// # Errors
    ///
    /// As [`Engine::load`], except that there is no size limit.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Program, LoadError> {
        self.compile(name, bytes, Intent::Command, &admit_any)
            .map_err(|kind| LoadError {
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
        let (compiled, recorded) = unsafe { self.deserialize_recorded(Precompiled::File(path)) }.map_err(fail)?;
        Ok(Program {
            name: file_name(path),
            size,
            sha256: recorded,
            signers: Vec::new(),
            kind: self.link(compiled, Intent::Command).map_err(fail)?,
            intent: Intent::Command,
        })
    }

    /// Like [`Engine::load_precompiled`], for code already in memory (for
    /// example read from a content store that only the host can write);
    /// `name` becomes the guest's `argv[0]`.
    ///
    /// # Safety
    ///
    /// As [`Engine::load_precompiled`]: the bytes are native code that runs
    /// unvalidated, so they must be code you compiled yourself and kept
    /// where nobody else could change it.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] when the bytes are not precompiled code, were compiled
    /// for another engine configuration, or are not a WASI command.
    pub unsafe fn load_precompiled_bytes(&self, name: &str, bytes: &[u8]) -> Result<Program, LoadError> {
        // SAFETY: the caller vouches for the bytes.
        unsafe { self.load_precompiled_as(name, bytes.len() as u64, (None, Vec::new()), bytes, Intent::Command) }
    }

    /// Like [`Engine::load_precompiled_bytes`], loaded for `intent` and
    /// reporting `size` as the size of the binary it was compiled from, and
    /// `sha256` as its digest when given (otherwise the digest the code's
    /// header records): a worker process loads what its parent compiled,
    /// and limits and pins the program as the parent would.
    ///
    /// # Safety
    ///
    /// As [`Engine::load_precompiled`].
    pub(crate) unsafe fn load_precompiled_as(
        &self,
        name: &str,
        size: u64,
        (sha256, signers): (Option<ContentHash>, Vec<String>),
        bytes: &[u8],
        intent: Intent,
    ) -> Result<Program, LoadError> {
        let fail = |kind| LoadError {
            module: name.into(),
            kind,
        };
        // SAFETY: the caller vouches for the bytes.
        let (compiled, recorded) = unsafe { self.deserialize_recorded(Precompiled::Bytes(bytes)) }.map_err(fail)?;
        Ok(Program {
            name: name.to_string(),
            size,
            sha256: sha256.or(recorded),
            signers,
            kind: self.link(compiled, intent).map_err(fail)?,
            intent,
        })
    }

    /// Code `Program::precompile` wrote (or wasmtime's alone) from a file or
    /// memory, with the digest of the WebAssembly it came from when its
    /// header records one. A file with the header is read into memory (the
    /// code does not start where wasmtime would map it); one without is
    /// mapped as before.
    ///
    /// # Safety
    ///
    /// As [`Engine::load_precompiled`].
    unsafe fn deserialize_recorded(
        &self,
        code: Precompiled<'_>,
    ) -> Result<(Compiled, Option<ContentHash>), LoadErrorKind> {
        let bad = LoadErrorKind::Precompiled;
        let whole;
        let bytes = match code {
            Precompiled::Bytes(bytes) => bytes,
            Precompiled::File(path) => {
                // One open: the header and the code after it are read from
                // the same file, whatever the path names by then.
                let mut file = std::fs::File::open(path).map_err(LoadErrorKind::Read)?;
                let mut start = [0u8; program::SOURCE_HEADER_LEN];
                let n = file.read(&mut start).map_err(LoadErrorKind::Read)?;
                if !program::has_source_header(&start[..n]) {
                    // SAFETY: as the caller promised.
                    return Ok((unsafe { self.deserialize(code) }?, None));
                }
                let mut rest = start[..n].to_vec();
                file.read_to_end(&mut rest).map_err(LoadErrorKind::Read)?;
                whole = rest;
                &whole
            }
        };
        let (recorded, rest) = program::split_source_header(bytes).map_err(bad)?;
        // SAFETY: as the caller promised.
        Ok((unsafe { self.deserialize(Precompiled::Bytes(rest)) }?, recorded))
    }

    /// Compiled code from a file or memory.
    ///
    /// # Safety
    ///
    /// As [`Engine::load_precompiled`].
    unsafe fn deserialize(&self, code: Precompiled<'_>) -> Result<Compiled, LoadErrorKind> {
        let engine = &self.inner.wasmtime;
        let config = &self.inner.config;
        let mismatch = |e: wasmtime::Error| {
            LoadErrorKind::Precompiled(format!(
                "{e:#}; it was compiled for another engine configuration (fuel metering, Wasm proposals, allocator or wasmtime version; this engine has fuel metering {} and Wasm proposals {}): precompile it again (`Program::precompile`) on an engine with this configuration",
                if config.fuel { "on" } else { "off" },
                config.proposals.with_implied()
            ))
        };
        let kind = match code {
            Precompiled::File(path) => wasmtime::Engine::detect_precompiled_file(path)
                .map_err(|e| LoadErrorKind::Read(std::io::Error::other(format!("{e:#}"))))?,
            Precompiled::Bytes(bytes) => wasmtime::Engine::detect_precompiled(bytes),
        };
        // SAFETY (every deserialize below): as the caller promised for the function.
        Ok(match (kind, code) {
            (Some(wasmtime::Precompiled::Module), Precompiled::File(path)) => {
                Compiled::Module(unsafe { Module::deserialize_file(engine, path) }.map_err(mismatch)?)
            }
            (Some(wasmtime::Precompiled::Module), Precompiled::Bytes(bytes)) => {
                Compiled::Module(unsafe { Module::deserialize(engine, bytes) }.map_err(mismatch)?)
            }
            (Some(wasmtime::Precompiled::Component), Precompiled::File(path)) => {
                Compiled::Component(unsafe { Component::deserialize_file(engine, path) }.map_err(mismatch)?)
            }
            (Some(wasmtime::Precompiled::Component), Precompiled::Bytes(bytes)) => {
                Compiled::Component(unsafe { Component::deserialize(engine, bytes) }.map_err(mismatch)?)
            }
            (None, _) => {
                return Err(LoadErrorKind::Precompiled(
                    "not precompiled wasmtime code; load WebAssembly with `load`".into(),
                ));
            }
        })
    }

    pub(crate) fn load_file(
        &self,
        path: &Path,
        max_size: u64,
        origin: &str,
        intent: Intent,
        admit: Admit<'_>,
    ) -> Result<Program, LoadError> {
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
        if let Some(program) = self.load_stamped(&meta, path, intent, admit) {
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
        let program = self
            .compile_hashed(&file_name(path), &bytes, hash, intent, admit)
            .map_err(fail)?;
        if let Some((cache, _)) = self.disk() {
            cache.record_hash(&meta, &hash);
        }
        Ok(program)
    }

    /// The program in the file `meta` describes, without reading the file,
    /// when the disk cache recorded which bytes it holds ([`DiskCache`]'s
    /// file stamps) and has their compiled code. `None` sends the load the
    /// long way (read, hash, check, compile or look up), which also gives
    /// any refusal (`admit`'s among them) its usual message.
    fn load_stamped(&self, meta: &std::fs::Metadata, path: &Path, intent: Intent, admit: Admit<'_>) -> Option<Program> {
        let (cache, key) = self.disk()?;
        let hash = cache.hash_for(&FileStamp::of(meta)?)?;
        let signers = admit(Candidate {
            hash: Some(&hash),
            bytes: None,
        })
        .ok()?;
        let mut fresh = false;
        let compiled = self
            .inner
            .programs
            .get_or_try_insert(hash, || {
                fresh = true;
                let code = cache.read_code(&hash, key, meta.len()).ok().flatten().ok_or(())?;
                // SAFETY: as in `compile_uncached`: the MACs of the stamp
                // record and of the entry prove that wasmcell recorded these
                // bytes' hash for this file and compiled this code from them
                // for this engine's configuration. Were the stamp stale, this
                // would still be code wasmcell compiled from validated
                // WebAssembly, only not the file's latest version; the
                // stamp's status-change time rules that out.
                unsafe { self.deserialize(Precompiled::Bytes(&code)) }.map_err(|_| ())
            })
            .ok()?;
        let kind = self.link(compiled, intent).ok()?;
        let counter = if fresh {
            &self.inner.counters.disk_hits
        } else {
            &self.inner.counters.memory_hits
        };
        Counters::bump(counter);
        Some(Program {
            name: file_name(path),
            size: meta.len(),
            sha256: Some(hash),
            signers,
            kind,
            intent,
        })
    }

    /// Compiles bytes already in memory through the caches, and links them
    /// for `intent`, if `admit` admits their digest.
    pub(crate) fn compile(
        &self,
        name: &str,
        bytes: &[u8],
        intent: Intent,
        admit: Admit<'_>,
    ) -> Result<Program, LoadErrorKind> {
        self.compile_hashed(name, bytes, cache::content_hash(bytes), intent, admit)
    }

    /// As [`Engine::compile`], for bytes whose content hash is `hash`.
    fn compile_hashed(
        &self,
        name: &str,
        bytes: &[u8],
        hash: ContentHash,
        intent: Intent,
        admit: Admit<'_>,
    ) -> Result<Program, LoadErrorKind> {
        if program::is_precompiled(bytes) {
            return Err(LoadErrorKind::Precompiled(
                "this is precompiled native code (a .cwasm), which is not validated like WebAssembly; load it with `Engine::load_precompiled` only if you compiled it yourself".into(),
            ));
        }
        let signers = admit(Candidate {
            hash: Some(&hash),
            bytes: Some(bytes),
        })?;
        let mut fresh = false;
        let compiled = self.inner.programs.get_or_try_insert(hash, || {
            fresh = true;
            self.compile_uncached(&hash, bytes, intent)
        })?;
        if !fresh {
            Counters::bump(&self.inner.counters.memory_hits);
        }
        Ok(Program {
            name: name.to_string(),
            size: bytes.len() as u64,
            sha256: Some(hash),
            signers,
            kind: self.link(compiled, intent)?,
            intent,
        })
    }

    /// The disk cache's copy of the guest if there is a good one, otherwise a
    /// fresh compile, stored to the disk cache.
    fn compile_uncached(&self, hash: &ContentHash, bytes: &[u8], intent: Intent) -> Result<Compiled, LoadErrorKind> {
        let counters = &self.inner.counters;
        let size = bytes.len() as u64;
        if let Some((cache, key)) = self.disk() {
            match cache.read_code(hash, key, size) {
                Ok(None) => {}
                Ok(Some(code)) => {
                    // SAFETY: the entry's MAC, made with a key no guest can
                    // read (`DiskCache`'s security section), proves that this
                    // user's wasmcell wrote exactly these bytes under the name
                    // of these guest bytes and this engine's configuration:
                    // code it compiled from them. They are deserialized from
                    // memory, so a later change to the file changes nothing.
                    match unsafe { self.deserialize(Precompiled::Bytes(&code)) } {
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
        let compiled = self.compile_wasm(bytes, intent)?;
        if let Some((cache, key)) = self.disk() {
            let stored = compiled
                .serialize()
                .map_err(|e| std::io::Error::other(format!("{e:#}")))
                .and_then(|code| cache.store_code(hash, key, size, &code));
            if stored.is_err() {
                Counters::bump(&counters.disk_errors);
            }
        }
        Ok(compiled)
    }

    /// Compiles WebAssembly (binary or WAT) after checking, for a command,
    /// that it is one: a guest that cannot run is refused before Cranelift
    /// spends seconds on it.
    fn compile_wasm(&self, bytes: &[u8], intent: Intent) -> Result<Compiled, LoadErrorKind> {
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
        let kind = wasm_kind(bytes).ok_or_else(|| LoadErrorKind::NotWasm("unknown WebAssembly version".into()))?;
        match intent {
            Intent::Command => shape::check_command(bytes)?,
            Intent::Library => shape::check_library(bytes)?,
        }
        // Before Cranelift runs: an import no linker provides, or a
        // proposal the policy leaves off, is named at once, however large
        // the module, and nothing is compiled or cached for it. Imports
        // first: their check reads two sections, validation all of them.
        self.check_imports(bytes, kind)?;
        validate::validate(bytes, self.inner.config.proposals)?;
        let engine = &self.inner.wasmtime;
        Counters::bump(&self.inner.counters.compiled);
        let invalid = |e| LoadErrorKind::Invalid(describe(e));
        Ok(match kind {
            WasmKind::Module => Compiled::Module(in_scoped_pool(|| Module::new(engine, bytes)).map_err(invalid)?),
            WasmKind::Component => {
                Compiled::Component(in_scoped_pool(|| Component::new(engine, bytes)).map_err(invalid)?)
            }
        })
    }

    /// Links compiled code against WASI for `intent`. Linking is not cached:
    /// a guest whose imports do not link stays compiled in the caches.
    fn link(&self, compiled: Compiled, intent: Intent) -> Result<ProgramKind, LoadErrorKind> {
        match compiled {
            Compiled::Module(module) => self.link_module(module, intent),
            Compiled::Component(component) => self.link_component(component, intent),
        }
    }

    fn link_module(&self, module: Module, intent: Intent) -> Result<ProgramKind, LoadErrorKind> {
        match intent {
            Intent::Command => check_start(&module)?,
            Intent::Library => check_initialize(&module)?,
        }
        let pre = imports::link_module(self.p1_linker()?, &module, self.inner.config.unknown_imports)?;
        Ok(ProgramKind::Module(pre))
    }

    fn link_component(&self, component: Component, intent: Intent) -> Result<ProgramKind, LoadErrorKind> {
        let engine = &self.inner.wasmtime;
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        // Checked before linking, as the shape check does before compiling.
        if intent == Intent::Command && !exports.iter().any(|e| shape::is_cli_run(e)) {
            return Err(shape::not_a_command(true, &exports));
        }
        let pre = imports::link_component(self.p2_linker()?, &component, self.inner.config.unknown_imports)?;
        if intent == Intent::Library {
            return Ok(ProgramKind::Library(pre));
        }
        let pre = CommandPre::new(pre).map_err(|e| {
            LoadErrorKind::NotCommand(format!(
                "the component is not a WASI command ({}); build it for wasm32-wasip2 as a `bin` target so that it exports wasi:cli/run",
                describe(e)
            ))
        })?;
        Ok(ProgramKind::Component(pre))
    }

    /// The preview 1 linker, built on first use.
    fn p1_linker(&self) -> Result<&wasmtime::Linker<State<WasiP1Ctx>>, LoadErrorKind> {
        lazy_linker(&self.inner.p1_linker, || linker::new_p1_linker(&self.inner.wasmtime))
    }

    /// The WASI 0.2 and `wasi:http` linker, built on first use.
    fn p2_linker(&self) -> Result<&wasmtime::component::Linker<State<P2Ctx>>, LoadErrorKind> {
        lazy_linker(&self.inner.p2_linker, || linker::new_p2_linker(&self.inner.wasmtime))
    }

    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.wasmtime
    }

    /// Starts the epoch thread, which lets deadlines and cancellation reach a
    /// computing guest, unless it runs already. Every run and instantiation
    /// calls it before the guest starts.
    pub(crate) fn start_ticker(&self) -> Result<()> {
        let inner = &*self.inner;
        if inner.ticker_stop.get().is_some() {
            return Ok(());
        }
        // Serialized so that two first runs at once start one thread.
        static STARTING: Mutex<()> = Mutex::new(());
        let _guard = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        if inner.ticker_stop.get().is_none() {
            let stop = ticker::start_epoch_ticker(&inner.wasmtime)?;
            let _ = inner.ticker_stop.set(stop);
        }
        Ok(())
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

/// A command module's `_start`: present, and `() -> ()`. Checked when the
/// program is loaded, not when the run calls it: a `_start` the runner cannot
/// call is a module that cannot run, not a guest that trapped.
fn check_start(module: &Module) -> Result<(), LoadErrorKind> {
    let Some(wasmtime::ExternType::Func(start)) = module.get_export("_start") else {
        let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
        return Err(shape::not_a_command(false, &exports));
    };
    if start.params().len() != 0 || start.results().len() != 0 {
        return Err(LoadErrorKind::StartSignature {
            found: signature(&start),
        });
    }
    Ok(())
}

/// A library module's `_initialize`: absent, or `() -> ()`. Instantiating
/// the module calls it, so one of another type is a module that cannot be
/// instantiated (a load error, nothing ran), not a guest that trapped. Also
/// checked by `Sandbox::instantiate` for a module loaded as a command.
pub(crate) fn check_initialize(module: &Module) -> Result<(), LoadErrorKind> {
    let found = match module.get_export("_initialize") {
        None => return Ok(()),
        Some(wasmtime::ExternType::Func(ty)) if ty.params().len() == 0 && ty.results().len() == 0 => return Ok(()),
        Some(wasmtime::ExternType::Func(ty)) => signature(&ty),
        Some(wasmtime::ExternType::Global(_)) => "global".into(),
        Some(wasmtime::ExternType::Table(_)) => "table".into(),
        Some(wasmtime::ExternType::Memory(_)) => "memory".into(),
        Some(wasmtime::ExternType::Tag(_)) => "tag".into(),
    };
    Err(LoadErrorKind::InitializeSignature { found })
}

/// Where precompiled code comes from.
#[derive(Clone, Copy)]
enum Precompiled<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
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

/// Runs a compilation on compile threads of its own, which are gone when it
/// returns. wasmtime compiles functions in parallel on rayon's current pool;
/// the global pool would keep its threads for the life of the process, and a
/// process that confines itself after loading its guest (`crate::wall`) must
/// have no thread the wall could miss. A pool that cannot be started compiles
/// on the calling thread alone.
fn in_scoped_pool<T: Send>(compile: impl FnOnce() -> T + Send) -> T {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut compile = Some(compile);
    let mut result = None;
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("wasmcell-compile-{i}"))
        .build_scoped(
            |thread| thread.run(),
            |pool| result = Some(pool.install(|| (compile.take().expect("compiled once"))())),
        );
    match (built, result) {
        (Ok(()), Some(result)) => result,
        _ => (compile.take().expect("not compiled yet"))(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // See: #13
    #[test]
    fn linkers_are_built_for_the_first_guest_that_needs_them() {
        let engine = Engine::new(EngineConfig::default()).unwrap();
        let linkers = |e: &Engine| (e.inner.p1_linker.get().is_some(), e.inner.p2_linker.get().is_some());
        assert_eq!(linkers(&engine), (false, false), "an engine alone links nothing");
        engine
            .load_bytes(
                "start.wasm",
                br#"(module (memory (export "memory") 1) (func (export "_start")))"#,
            )
            .unwrap();
        assert_eq!(linkers(&engine), (true, false), "a module needs no WASI 0.2 linker");
        let component = r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func (export "f") (canon lift (core func $i "f"))))"#;
        engine.load_library_bytes("f.wasm", component.as_bytes()).unwrap();
        assert_eq!(linkers(&engine), (true, true));
    }
}
