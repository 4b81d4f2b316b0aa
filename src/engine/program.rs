//! What loading produces: a [`Program`] ready to run, or a [`LoadError`]
//! saying why there is none.

use crate::cache::ContentHash;
use crate::policy::{ByteSize, Proposal, Proposals};
use crate::store::{P2Ctx, State};
use crate::term::sanitize;
use anyhow::Result;
use std::fmt;
use std::path::{Path, PathBuf};
use wasmtime::InstancePre;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;

/// A function type as WAT-like text: `(i32, i64) -> (f32)`.
pub(super) fn signature(ty: &wasmtime::FuncType) -> String {
    let list = |types: &mut dyn Iterator<Item = wasmtime::ValType>| {
        types.map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
    };
    format!("({}) -> ({})", list(&mut ty.params()), list(&mut ty.results()))
}

pub(super) fn describe(e: wasmtime::Error) -> String {
    format!("{e:#}")
}

pub(super) fn file_name(path: &Path) -> String {
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
    pub(super) name: String,
    pub(super) size: u64,
    /// The SHA-256 of the WebAssembly it was compiled from; `None` for
    /// precompiled code, which does not record it.
    pub(crate) sha256: Option<ContentHash>,
    /// The fingerprints of the `module.signed-by` keys whose signature on it
    /// verified when a sandbox loaded it.
    pub(crate) signers: Vec<String>,
    pub(crate) kind: ProgramKind,
    pub(super) intent: Intent,
}

#[derive(Clone)]
pub(crate) enum ProgramKind {
    /// A core module: a command, or (loaded as a library) any module.
    Module(InstancePre<State<WasiP1Ctx>>),
    /// A component exporting `wasi:cli/run`, loaded as a command.
    Component(CommandPre<State<P2Ctx>>),
    /// A component of any world, loaded as a library.
    Library(wasmtime::component::InstancePre<State<P2Ctx>>),
}

/// What a guest is loaded for: run as a command (`Engine::load`), or
/// instantiated to call its exports (`Engine::load_library`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intent {
    Command,
    Library,
}

/// Compiled code before linking: what the caches keep.
#[derive(Clone)]
pub(crate) enum Compiled {
    Module(wasmtime::Module),
    Component(wasmtime::component::Component),
}

impl Compiled {
    pub(super) fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            Compiled::Module(module) => module.serialize(),
            Compiled::Component(component) => component.serialize(),
        }
    }
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

    /// The SHA-256 of the WebAssembly it was compiled from, in lowercase
    /// hexadecimal as `sha256sum` prints it (what `module.sha256` pins and
    /// every report carries); `None` for a program loaded from precompiled
    /// code, which does not record it.
    pub fn sha256(&self) -> Option<String> {
        self.sha256.as_ref().map(|hash| crate::cache::hex(hash))
    }

    /// This program, recorded as verified by `signers` (the matrix checks
    /// each policy's `module.signed-by` keys on the file it compiled once).
    pub(crate) fn with_signers(&self, signers: Vec<String>) -> Program {
        Program {
            signers,
            ..self.clone()
        }
    }

    /// Whether this is a component (`wasm32-wasip2`) rather than a core
    /// module (`wasm32-wasip1`).
    pub fn is_component(&self) -> bool {
        matches!(self.kind, ProgramKind::Component(_) | ProgramKind::Library(_))
    }

    /// Whether this program was loaded as a library
    /// ([`Engine::load_library`](crate::Engine::load_library)): it is
    /// instantiated to call its exports, not run as a command.
    pub fn is_library(&self) -> bool {
        self.intent == Intent::Library
    }

    /// The program as precompiled native code, as `wasmcell compile` writes
    /// it; [`Engine::load_precompiled`](crate::Engine::load_precompiled) loads it into an engine with the same
    /// configuration.
    ///
    /// # Errors
    ///
    /// When wasmtime cannot serialize the code (it always can for programs it
    /// compiled).
    pub fn precompile(&self) -> Result<Vec<u8>> {
        let code = self.kind.serialize().map_err(anyhow::Error::from)?;
        Ok(with_source_header(self.sha256.as_ref(), &code))
    }

    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match &self.kind {
            ProgramKind::Module(pre) => pre.module().engine(),
            ProgramKind::Component(pre) => pre.engine(),
            ProgramKind::Library(pre) => pre.engine(),
        }
    }
}

impl ProgramKind {
    pub(super) fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            ProgramKind::Module(pre) => pre.module().serialize(),
            ProgramKind::Component(pre) => pre.instance_pre().component().serialize(),
            ProgramKind::Library(pre) => pre.component().serialize(),
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
    /// The module is malformed, truncated, or uses something no policy can
    /// turn on (threads, shared memory).
    Invalid(String),
    /// The module is valid WebAssembly once Wasm proposals the policy leaves
    /// off are on: `[wasm] proposals` (or
    /// [`PolicyBuilder::wasm_proposal`](crate::policy::PolicyBuilder::wasm_proposal))
    /// would allow it. Found by validating before compiling, so it is
    /// reported at once even for a large module.
    Proposal {
        /// The first proposal the module was found to need.
        name: Proposal,
        /// Every proposal it needs that the policy leaves off, `name` included.
        needed: Proposals,
        /// What the validator refused first, without its offset.
        detail: String,
    },
    /// The module imports something WASI does not provide, or an import's
    /// type does not match WASI's.
    Link(String),
    /// A core module imports something no linker provides: WASI is all
    /// wasmcell provides. Found before compiling, from the guest's import
    /// section and the engine's linker. Under `[wasm] unknown-imports =
    /// "trap"` only an unknown memory, table, global or tag is refused.
    UnknownImport {
        /// The import's module name, such as `host`.
        module: String,
        /// The import's name, such as `call`.
        name: String,
        /// What it imports: `function`, `memory`, `table`, `global` or `tag`.
        kind: &'static str,
    },
    /// The module is not a WASI command (no `_start`, or a component that
    /// does not export `wasi:cli/run`). The message says what it is instead
    /// (a reactor exporting `init`, ...); load such a guest with
    /// [`Engine::load_library`](crate::Engine::load_library) to call its exports.
    NotCommand(String),
    /// The module's `_start` takes parameters or returns results; a WASI
    /// command's `_start` is `() -> ()`.
    StartSignature {
        /// The type the module gives `_start`, such as `(i32) -> ()`.
        found: String,
    },
    /// The module's `_initialize`, which instantiating it as a library (or
    /// through [`Sandbox::instantiate`](crate::Sandbox::instantiate)) calls,
    /// takes parameters, returns results or is not a function; a reactor's
    /// `_initialize` is `() -> ()`.
    InitializeSignature {
        /// The type the module gives `_initialize`, such as `(i32) -> ()`,
        /// or what it is instead of a function (`global`, `memory`, ...).
        found: String,
    },
    /// Precompiled native code given where WebAssembly was expected, or
    /// precompiled code that does not fit this engine.
    Precompiled(String),
    /// The policy pins the modules it may run (`module.sha256`), and this is
    /// not one of them. Found before compiling.
    ModulePin {
        /// The module's SHA-256 (lowercase hex), or for precompiled code the
        /// SHA-256 of the WebAssembly it was compiled from, which
        /// `Program::precompile` records; `None` for precompiled code that
        /// does not record it.
        found: Option<String>,
        /// Whether the program is precompiled code.
        precompiled: bool,
        /// The digests the policy allows.
        allowed: Vec<String>,
        /// Where the pins were set, as `module.sha256 in FILE` or a flag.
        origin: String,
    },
    /// The policy asks for a signature (`module.signed-by`), and the module
    /// carries none that one of its keys verifies. Found before compiling.
    ModuleSignature {
        /// What is wrong: not signed, signed with another key or changed
        /// since, precompiled.
        reason: String,
        /// Where the keys were named, as `module.signed-by in FILE`.
        origin: String,
    },
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

    /// The message without its `cannot load ...:` opening, for a worker
    /// process to send its parent ([`LoadError::precompiled`] rebuilds it).
    pub(crate) fn kind_message(&self) -> String {
        let text = self.to_string();
        let opening = format!("cannot load `{}`: ", self.module.display());
        text.strip_prefix(&opening).unwrap_or(&text).to_string()
    }

    /// Compiled code of `name` that did not load, for `why`.
    pub(crate) fn precompiled(name: &str, why: String) -> LoadError {
        LoadError {
            module: name.into(),
            kind: LoadErrorKind::Precompiled(why),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot load `{}`: ", self.module.display())?;
        match &self.kind {
            LoadErrorKind::Read(e) => write!(f, "{e}; check the path"),
            LoadErrorKind::TooLarge { size, limit, origin } => write!(
                f,
                "the file is {}, over the {} allowed ({origin})",
                ByteSize(*size),
                ByteSize(*limit)
            ),
            LoadErrorKind::NotWasm(why) => write!(
                f,
                "not a WebAssembly module or component ({why}); build the guest for wasm32-wasip1 or wasm32-wasip2"
            ),
            LoadErrorKind::Invalid(why) => write!(f, "invalid WebAssembly: {why}"),
            LoadErrorKind::Proposal { needed, .. } => {
                let titles: Vec<_> = needed.iter().map(Proposal::title).collect();
                let names: Vec<_> = needed.iter().map(|p| format!("\"{p}\"")).collect();
                let it = if titles.len() == 1 { "it" } else { "them" };
                write!(
                    f,
                    "uses {}; allow {it} with [wasm] proposals = [{}]",
                    titles.join(" and "),
                    names.join(", ")
                )
            }
            LoadErrorKind::Link(why) => write!(
                f,
                "{why}; wasmcell provides only WASI (wasi_snapshot_preview1 for modules, WASI 0.2 for components)"
            ),
            LoadErrorKind::UnknownImport { module, name, kind } => {
                let (module, name) = (sanitize(module), sanitize(name));
                write!(
                    f,
                    "imports the {kind} `{module}::{name}`, but wasmcell provides only WASI (wasi_snapshot_preview1 for modules, WASI 0.2 for components); "
                )?;
                if *kind == "function" {
                    write!(
                        f,
                        "if the guest never calls it, [wasm] unknown-imports = \"trap\" runs it until it does"
                    )
                } else {
                    write!(f, "[wasm] unknown-imports = \"trap\" stands in for functions only")
                }
            }
            LoadErrorKind::NotCommand(why) | LoadErrorKind::Precompiled(why) => write!(f, "{why}"),
            LoadErrorKind::ModulePin {
                found,
                precompiled,
                allowed,
                origin,
            } => fmt_pin(f, found.as_deref(), *precompiled, allowed, origin),
            LoadErrorKind::ModuleSignature { reason, origin } => write!(
                f,
                "{reason}, and {origin} asks for a signature one of its keys verifies; sign the module (`wasmcell sign`), or check that you run the module the policy was written for"
            ),
            LoadErrorKind::StartSignature { found } => write!(
                f,
                "`_start` has type `{found}`, but a command's `_start` takes no parameters and returns nothing (`() -> ()`); export it with that type, as a `bin` target for wasm32-wasip1 does"
            ),
            LoadErrorKind::InitializeSignature { found } => write!(
                f,
                "`_initialize` has type `{found}`, but a reactor's `_initialize` is a function that takes no parameters and returns nothing (`() -> ()`); export it with that type, as a `cdylib` for wasm32-wasip1 does"
            ),
        }
    }
}

/// The message already includes any I/O error, so it is not also given as a
/// `source` (that would print it twice in `{:#}` chains); match on
/// [`LoadError::kind`] to get at it.
impl std::error::Error for LoadError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WasmKind {
    Module,
    Component,
}

pub(super) fn wasm_kind(bytes: &[u8]) -> Option<WasmKind> {
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

/// What starts precompiled code `Program::precompile` writes, before
/// wasmtime's own: this magic, a version byte, whether a digest follows,
/// and the SHA-256 of the WebAssembly the code was compiled from (zeros
/// when unknown). It lets a pinned policy (`module.sha256`) check which
/// module precompiled code came from. The magic cannot start WebAssembly
/// (`\0asm`) or wasmtime's code (an ELF file).
const SOURCE_MAGIC: &[u8; 8] = b"\0wcellpc";

/// Length of the header [`SOURCE_MAGIC`] starts.
pub(super) const SOURCE_HEADER_LEN: usize = SOURCE_MAGIC.len() + 2 + 32;

/// `code` with the header recording `sha256`.
fn with_source_header(sha256: Option<&ContentHash>, code: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SOURCE_HEADER_LEN + code.len());
    out.extend_from_slice(SOURCE_MAGIC);
    out.push(1);
    out.push(u8::from(sha256.is_some()));
    out.extend_from_slice(sha256.unwrap_or(&[0; 32]));
    out.extend_from_slice(code);
    out
}

/// Whether `bytes` are precompiled code rather than WebAssembly: wasmtime's
/// (an ELF file), or wasmcell's with the header `Program::precompile` writes.
pub(crate) fn is_precompiled(bytes: &[u8]) -> bool {
    wasmtime::Engine::detect_precompiled(bytes).is_some() || has_source_header(bytes)
}

/// Whether `bytes` start with the header `Program::precompile` writes.
pub(super) fn has_source_header(bytes: &[u8]) -> bool {
    bytes.starts_with(SOURCE_MAGIC)
}

/// Precompiled code split into the digest its header records and wasmtime's
/// code; code without the header (from `wasmtime compile`, or an older
/// wasmcell) records none.
///
/// # Errors
///
/// A header that is cut short or of an unknown version.
pub(super) fn split_source_header(bytes: &[u8]) -> Result<(Option<ContentHash>, &[u8]), String> {
    if !has_source_header(bytes) {
        return Ok((None, bytes));
    }
    if bytes.len() < SOURCE_HEADER_LEN || bytes[SOURCE_MAGIC.len()] != 1 || bytes[SOURCE_MAGIC.len() + 1] > 1 {
        return Err(
            "its wasmcell header is cut short or of a version this wasmcell does not read; precompile it again".into(),
        );
    }
    let start = SOURCE_MAGIC.len() + 2;
    let digest: ContentHash = bytes[start..start + 32].try_into().expect("32 bytes");
    let recorded = (bytes[SOURCE_MAGIC.len() + 1] == 1).then_some(digest);
    Ok((recorded, &bytes[SOURCE_HEADER_LEN..]))
}

/// The refusal of a module `module.sha256` does not pin: `found` is its
/// digest (for precompiled code, its source's), `None` when precompiled
/// code records none.
fn fmt_pin(
    f: &mut fmt::Formatter<'_>,
    found: Option<&str>,
    precompiled: bool,
    allowed: &[String],
    origin: &str,
) -> fmt::Result {
    let Some(found) = found else {
        return write!(
            f,
            "it is precompiled code that does not record the SHA-256 of the WebAssembly it came from, and {origin} pins the module; precompile it again with this wasmcell (`wasmcell compile`), or load the WebAssembly file"
        );
    };
    let what = if precompiled {
        "it was compiled from WebAssembly whose SHA-256"
    } else {
        "its SHA-256"
    };
    write!(
        f,
        "{what} is {found}, and {origin} allows only {}: the policy was written for another module; run that one, or add this digest to module.sha256 if you trust this module",
        allowed.join(", ")
    )
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
