//! A guest's imports, checked against the engine's linkers before it is
//! compiled, and linked as `[wasm] unknown-imports` says.
//!
//! The check links a *shell*: the guest's own sections that declare its
//! imports and the types they use, copied byte for byte, and nothing else.
//! wasmtime compiles the shell in a moment (it holds no code) and the
//! engine's own linker (preview 1, or WASI 0.2 with `wasi:http`, with the
//! drill's import when that test feature is on) links it, so what is missing
//! or mistyped is found by the same code that would link the guest, never by
//! a list of names kept beside it, and before Cranelift sees the guest.

use super::program::{LoadErrorKind, WasmKind, describe};
use super::{Engine, in_scoped_pool};
use crate::policy::UnknownImports;
use wasmparser::{Parser, Payload};
use wasmtime::component::{Component, Linker as ComponentLinker};
use wasmtime::{ExternType, Linker, Module};

impl Engine {
    /// Refuses a guest whose imports the engine's linker for its kind cannot
    /// satisfy (under `unknown-imports = "trap"`: any but unknown functions),
    /// before it is compiled (and before it is validated: the shell is
    /// validated alone). Bytes whose imports cannot be read this way, or
    /// whose shell does not compile (it needs a proposal the engine lacks),
    /// pass: validation, compiling and linking say what is wrong with them.
    pub(super) fn check_imports(&self, bytes: &[u8], kind: WasmKind) -> Result<(), LoadErrorKind> {
        let Some(shell) = shell(bytes) else {
            return Ok(());
        };
        let engine = &self.inner.wasmtime;
        let mode = self.inner.config.unknown_imports;
        match kind {
            WasmKind::Module => match in_scoped_pool(|| Module::new(engine, &shell)) {
                Ok(shell) => link_module(self.p1_linker()?, &shell, mode).map(drop),
                Err(_) => Ok(()),
            },
            WasmKind::Component => match in_scoped_pool(|| Component::new(engine, &shell)) {
                Ok(shell) => link_component(self.p2_linker()?, &shell, mode).map(drop),
                Err(_) => Ok(()),
            },
        }
    }
}

/// `module` linked by `linker`; under [`UnknownImports::Trap`], each
/// function import the linker lacks is stood in for by one that traps
/// naming it (on a copy of the linker: the engine's is shared).
pub(super) fn link_module<T: 'static>(
    linker: &Linker<T>,
    module: &Module,
    mode: UnknownImports,
) -> Result<wasmtime::InstancePre<T>, LoadErrorKind> {
    let linked = link_as(
        linker,
        mode,
        |l| l.instantiate_pre(module),
        |l| l.define_unknown_imports_as_traps(module),
    );
    linked.map_err(|refused| match refused.downcast_ref::<wasmtime::UnknownImportError>() {
        Some(unknown) => LoadErrorKind::UnknownImport {
            module: unknown.module().to_string(),
            name: unknown.name().to_string(),
            kind: kind_of(&unknown.ty()),
        },
        None => LoadErrorKind::Link(describe(refused)),
    })
}

/// As [`link_module`], for a component.
pub(super) fn link_component<T: 'static>(
    linker: &ComponentLinker<T>,
    component: &Component,
    mode: UnknownImports,
) -> Result<wasmtime::component::InstancePre<T>, LoadErrorKind> {
    let linked = link_as(
        linker,
        mode,
        |l| l.instantiate_pre(component),
        |l| l.define_unknown_imports_as_traps(component),
    );
    linked.map_err(|refused| LoadErrorKind::Link(describe(refused)))
}

/// `link` with `linker`; when that fails under [`UnknownImports::Trap`],
/// `link` again with a copy of it that `stand_in` gave trapping functions.
/// The error is the last link's.
fn link_as<L: Clone, P>(
    linker: &L,
    mode: UnknownImports,
    link: impl Fn(&L) -> wasmtime::Result<P>,
    stand_in: impl FnOnce(&mut L) -> wasmtime::Result<()>,
) -> wasmtime::Result<P> {
    let refused = match link(linker) {
        Ok(pre) => return Ok(pre),
        Err(e) => e,
    };
    if mode == UnknownImports::Refuse {
        return Err(refused);
    }
    let mut with_traps = linker.clone();
    stand_in(&mut with_traps)?;
    link(&with_traps)
}

fn kind_of(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "function",
        ExternType::Global(_) => "global",
        ExternType::Table(_) => "table",
        ExternType::Memory(_) => "memory",
        ExternType::Tag(_) => "tag",
    }
}

/// Section ids, the same in modules and components where both have them.
const CORE_TYPE: u8 = 1;
const CORE_IMPORT: u8 = 2;
const COMPONENT_CORE_TYPE: u8 = 3;
const COMPONENT_ALIAS: u8 = 6;
const COMPONENT_TYPE: u8 = 7;
const COMPONENT_IMPORT: u8 = 10;

/// The shell of `bytes` (a binary module or component): its header and the
/// sections that declare its imports and their types, as they are; `None`
/// when it imports nothing or cannot be read (compiling will say why).
///
/// A module's types and imports are its first two sections. A component's
/// are its leading type, alias and import sections, up to its first section
/// of another kind (a nested module, an instance, a canonical function):
/// each refers only to what comes before it, so the shell is as valid as
/// the component. Imports declared after that point are not in the shell;
/// linking the compiled component checks them.
fn shell(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut parser = Parser::new(0);
    let mut data = bytes;
    let mut shell = bytes.get(..8)?.to_vec();
    let mut imports = false;
    loop {
        let wasmparser::Chunk::Parsed { payload, consumed } = parser.parse(data, true).ok()? else {
            return None;
        };
        data = &data[consumed..];
        let keep = match &payload {
            Payload::TypeSection(r) => Some((CORE_TYPE, r.range())),
            Payload::ImportSection(r) => {
                imports = true;
                Some((CORE_IMPORT, r.range()))
            }
            Payload::CoreTypeSection(r) => Some((COMPONENT_CORE_TYPE, r.range())),
            Payload::ComponentAliasSection(r) => Some((COMPONENT_ALIAS, r.range())),
            Payload::ComponentTypeSection(r) => Some((COMPONENT_TYPE, r.range())),
            Payload::ComponentImportSection(r) => {
                imports = true;
                Some((COMPONENT_IMPORT, r.range()))
            }
            Payload::Version { .. } | Payload::CustomSection(_) => continue,
            _ => None,
        };
        match keep {
            Some((id, range)) => push_section(&mut shell, id, bytes.get(range)?),
            None => break,
        }
    }
    imports.then_some(shell)
}

/// Appends a section: its id, its size as unsigned LEB128, its contents.
fn push_section(out: &mut Vec<u8>, id: u8, contents: &[u8]) {
    out.push(id);
    let mut size = contents.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(contents);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell_of(wat: &str) -> Option<Vec<u8>> {
        shell(&wat::parse_str(wat).unwrap())
    }

    #[test]
    fn a_module_shell_holds_its_types_and_imports_only() {
        let shell = shell_of(
            r#"(module (type (func (param i32))) (import "host" "call" (func (type 0)))
                (memory 1) (data (i32.const 0) "data") (func (export "_start")))"#,
        )
        .unwrap();
        // The type section keeps the type of `_start` too: types are copied
        // as they are.
        let module = wat::parse_str(
            r#"(module (type (func (param i32))) (type (func)) (import "host" "call" (func (type 0))))"#,
        )
        .unwrap();
        assert_eq!(shell, module);
        assert_eq!(
            shell_of(r#"(module (func (export "_start")))"#),
            None,
            "nothing to check"
        );
    }

    #[test]
    fn a_component_shell_stops_at_its_first_other_section() {
        let shell = shell_of(
            r#"(component
                (import "host:call/api" (instance (export "call" (func))))
                (core module $m (func (export "f")))
                (core instance $i (instantiate $m))
                (func (export "f") (canon lift (core func $i "f"))))"#,
        )
        .unwrap();
        let imports =
            wat::parse_str(r#"(component (import "host:call/api" (instance (export "call" (func)))))"#).unwrap();
        assert_eq!(shell, imports);
    }

    fn engine(mode: UnknownImports) -> Engine {
        Engine::new(crate::EngineConfig {
            unknown_imports: mode,
            ..crate::EngineConfig::default()
        })
        .unwrap()
    }

    // See: #25
    #[test]
    fn unknown_imports_are_refused_before_compiling() {
        let engine = engine(UnknownImports::Refuse);
        let wat = r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (import "host" "call" (func)) (func (export "_start")))"#;
        let err = engine.load_bytes("host.wasm", wat.as_bytes()).err().unwrap();
        let LoadErrorKind::UnknownImport { module, name, kind } = err.kind() else {
            panic!("{err}")
        };
        assert_eq!((module.as_str(), name.as_str(), *kind), ("host", "call", "function"));
        assert!(err.to_string().contains("imports the function `host::call`"), "{err}");
        let err = engine
            .load_library_bytes("lib.wasm", wat.replace("_start", "f").as_bytes())
            .err()
            .unwrap();
        assert!(matches!(err.kind(), LoadErrorKind::UnknownImport { .. }), "{err}");
        // A WASI import of the wrong type is the linker's finding too.
        let wat = r#"(module (import "wasi_snapshot_preview1" "fd_write" (func)) (func (export "_start")))"#;
        let err = engine.load_bytes("typed.wasm", wat.as_bytes()).err().unwrap();
        assert!(matches!(err.kind(), LoadErrorKind::Link(_)), "{err}");
        let component = r#"(component (import "host:call/api" (instance (export "call" (func))))
            (core module $m (func (export "f"))) (core instance $i (instantiate $m))
            (func (export "f") (canon lift (core func $i "f"))))"#;
        let err = engine.load_library_bytes("c.wasm", component.as_bytes()).err().unwrap();
        assert!(err.to_string().contains("`host:call/api`"), "{err}");
        assert_eq!(engine.cache_stats().compiled, 0, "nothing was compiled");
    }

    // See: #25
    #[test]
    fn unknown_functions_link_as_traps_and_other_imports_stay_refused() {
        let engine = engine(UnknownImports::Trap);
        let wat = r#"(module (import "host" "call" (func)) (func (export "_start")))"#;
        engine.load_bytes("host.wasm", wat.as_bytes()).unwrap();
        let wat = r#"(module (import "env" "memory" (memory 1)) (func (export "_start")))"#;
        let err = engine.load_bytes("mem.wasm", wat.as_bytes()).err().unwrap();
        assert!(
            err.to_string()
                .contains("imports the memory `env::memory`, but wasmcell provides only WASI"),
            "{err}"
        );
        assert!(err.to_string().contains("for functions only"), "{err}");
        let component = r#"(component (import "host:call/api" (instance (export "call" (func))))
            (core module $m (func (export "f"))) (core instance $i (instantiate $m))
            (func (export "f") (canon lift (core func $i "f"))))"#;
        engine.load_library_bytes("c.wasm", component.as_bytes()).unwrap();
        assert_eq!(
            engine.cache_stats().compiled,
            2,
            "only the guests that link were compiled"
        );
    }

    #[test]
    fn long_sections_keep_their_size() {
        let mut out = Vec::new();
        push_section(&mut out, 2, &[0; 300]);
        assert_eq!(&out[..3], &[2, 0xac, 0x02]);
        assert_eq!(out.len(), 303);
    }

    #[test]
    fn unreadable_bytes_are_left_to_the_compiler() {
        assert_eq!(shell(b"\0asm\x01\0\0\0\x02\xff"), None);
        assert_eq!(shell(b"\0as"), None);
    }
}
