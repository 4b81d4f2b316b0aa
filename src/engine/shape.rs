//! The shape of a guest, read before it is compiled: what a core module or
//! component exports, and whether that makes it a command. Reading stops
//! before the code section (nested modules are skipped), so a guest that
//! cannot run as a command is refused in milliseconds however large it is.
//!
//! This is a cheap parse, not validation: when the bytes cannot be read this
//! way the check says nothing, and compilation reports what is wrong.

use super::LoadErrorKind;
use crate::term::sanitize;
use wasmparser::{CompositeInnerType, ExternalKind, FuncType, Parser, Payload, TypeRef};

/// How many export names a message lists before "and N more".
const LISTED: usize = 3;

/// Whether `bytes` (a binary module or component) is a WASI command:
/// `Ok` when it is, or when its exports could not be read (compilation will
/// say why); otherwise the refusal, built by [`not_a_command`] or as a
/// `_start` of the wrong type.
pub(super) fn check_command(bytes: &[u8]) -> Result<(), LoadErrorKind> {
    let Ok(shape) = read(bytes) else {
        return Ok(());
    };
    match shape {
        Shape::Module { exports, start, .. } => match start {
            Some(Export::Func(Some(ty))) if ty.params().is_empty() && ty.results().is_empty() => Ok(()),
            Some(Export::Func(Some(ty))) => Err(LoadErrorKind::StartSignature { found: signature(&ty) }),
            // `_start` is not a function, or its type could not be read:
            // linking says which.
            Some(Export::Func(None) | Export::Other(_)) => Ok(()),
            None => Err(not_a_command(false, &exports)),
        },
        Shape::Component { exports } => {
            if exports.iter().any(|e| is_cli_run(e)) {
                Ok(())
            } else {
                Err(not_a_command(true, &exports))
            }
        }
    }
}

/// Whether `bytes` can be instantiated as a library: a core module's
/// `_initialize`, which instantiation calls, is absent or `() -> ()`. `Ok`
/// when its exports could not be read (compilation will say why), or the
/// type of `_initialize` could not be (linking checks it again).
pub(super) fn check_library(bytes: &[u8]) -> Result<(), LoadErrorKind> {
    match read(bytes) {
        Ok(Shape::Module {
            initialize: Some(Export::Func(Some(ty))),
            ..
        }) if !(ty.params().is_empty() && ty.results().is_empty()) => {
            Err(LoadErrorKind::InitializeSignature { found: signature(&ty) })
        }
        Ok(Shape::Module {
            initialize: Some(Export::Other(kind)),
            ..
        }) => Err(LoadErrorKind::InitializeSignature { found: kind.into() }),
        _ => Ok(()),
    }
}

/// Whether a component export name is the WASI command interface,
/// `wasi:cli/run` at any 0.2 version.
pub(super) fn is_cli_run(name: &str) -> bool {
    name == "wasi:cli/run" || name.starts_with("wasi:cli/run@0.2")
}

/// The refusal for a guest that is not a command, saying what it is (a
/// reactor exporting `init`, `memory` and 12 more) and how to use it.
/// Export names are the guest's choice, so they are escaped.
pub(super) fn not_a_command(component: bool, exports: &[String]) -> LoadErrorKind {
    let what = match (component, exports.iter().any(|e| e == "_initialize")) {
        (true, _) => "a component",
        (false, true) => "a reactor",
        (false, false) => "a library module",
    };
    let listed = list_names(exports);
    let missing = if component {
        "it does not export `wasi:cli/run`"
    } else {
        "it has no `_start` function"
    };
    LoadErrorKind::NotCommand(format!(
        "not a WASI command but {what} {listed} ({missing}); load it with `load_library` and call its exports through `Sandbox::instantiate`"
    ))
}

/// `exporting `a`, `b`, `c` and 12 more`, or `exporting nothing`.
fn list_names(names: &[String]) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(LISTED)
        .map(|n| format!("`{}`", sanitize(&crate::term::truncate(n, 64))))
        .collect();
    let more = names.len().saturating_sub(LISTED);
    match (shown.len(), more) {
        (0, _) => "exporting nothing".into(),
        (1, 0) => format!("exporting {}", shown[0]),
        (_, 0) => {
            let (last, first) = shown.split_last().expect("two or more");
            format!("exporting {} and {last}", first.join(", "))
        }
        (_, more) => format!("exporting {} and {more} more", shown.join(", ")),
    }
}

fn signature(ty: &FuncType) -> String {
    let list = |types: &[wasmparser::ValType]| types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
    format!("({}) -> ({})", list(ty.params()), list(ty.results()))
}

/// What a module exports under one name.
#[derive(Debug)]
enum Export {
    /// A function, with its type when it could be read.
    Func(Option<FuncType>),
    /// Something else: `memory`, `table`, `global` or `tag`.
    Other(&'static str),
}

/// What the check needs to know about a guest.
#[derive(Debug)]
enum Shape {
    Module {
        exports: Vec<String>,
        /// The export named `_start`, if any.
        start: Option<Export>,
        /// The export named `_initialize`, if any.
        initialize: Option<Export>,
    },
    Component {
        /// The top-level export names.
        exports: Vec<String>,
    },
}

/// The guest's exports, read up to its code section. Nested modules and
/// components are skipped, not parsed.
fn read(bytes: &[u8]) -> wasmparser::Result<Shape> {
    let mut parser = Parser::new(0);
    let mut data = bytes;
    let mut component = false;
    let mut types: Vec<Option<FuncType>> = Vec::new();
    let mut funcs: Vec<u32> = Vec::new();
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    let mut component_exports: Vec<String> = Vec::new();
    while let wasmparser::Chunk::Parsed { payload, consumed } = parser.parse(data, true)? {
        data = &data[consumed..];
        match payload {
            Payload::Version { encoding, .. } => component = encoding == wasmparser::Encoding::Component,
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub in group?.types() {
                        types.push(match &sub.composite_type.inner {
                            CompositeInnerType::Func(ty) => Some(ty.clone()),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    if let TypeRef::Func(ty) | TypeRef::FuncExact(ty) = import?.ty {
                        funcs.push(ty);
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    funcs.push(ty?);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export?;
                    exports.push((export.name.to_string(), export.kind, export.index));
                }
            }
            Payload::ComponentExportSection(reader) => {
                for export in reader {
                    component_exports.push(export?.name.name.to_string());
                }
            }
            Payload::ModuleSection { unchecked_range, .. } | Payload::ComponentSection { unchecked_range, .. } => {
                data = data.get(unchecked_range.len()..).unwrap_or_default();
            }
            // Exports come before code in a core module (and a component
            // has no code section of its own).
            Payload::CodeSectionStart { .. } | Payload::End(_) => break,
            _ => {}
        }
    }
    if component {
        return Ok(Shape::Component {
            exports: component_exports,
        });
    }
    let export = |name: &str| find_export(&exports, &funcs, &types, name);
    let (start, initialize) = (export("_start"), export("_initialize"));
    Ok(Shape::Module {
        exports: exports.into_iter().map(|(name, ..)| name).collect(),
        start,
        initialize,
    })
}

/// The export named `wanted`, with a function's type when it can be read
/// (`funcs` holds each function's type index, imports first).
fn find_export(
    exports: &[(String, ExternalKind, u32)],
    funcs: &[u32],
    types: &[Option<FuncType>],
    wanted: &str,
) -> Option<Export> {
    let (_, kind, index) = exports.iter().find(|(name, ..)| name == wanted)?;
    Some(match kind {
        ExternalKind::Func | ExternalKind::FuncExact => Export::Func(
            funcs
                .get(*index as usize)
                .and_then(|ty| types.get(*ty as usize).cloned().flatten()),
        ),
        ExternalKind::Memory => Export::Other("memory"),
        ExternalKind::Table => Export::Other("table"),
        ExternalKind::Global => Export::Other("global"),
        ExternalKind::Tag => Export::Other("tag"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(wat: &str) -> Result<(), String> {
        check_command(&wat::parse_str(wat).unwrap()).map_err(|e| match e {
            LoadErrorKind::NotCommand(why) => why,
            LoadErrorKind::StartSignature { found } => format!("signature {found}"),
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn commands_pass_and_reactors_are_named() {
        assert_eq!(check(r#"(module (func (export "_start")))"#), Ok(()));
        let why = check(
            r#"(module (memory (export "memory") 1)
                (func (export "_initialize")) (func (export "ruby-init")) (func (export "x")) (func (export "y")))"#,
        )
        .unwrap_err();
        assert!(
            why.contains("a reactor exporting `memory`, `_initialize`, `ruby-init` and 2 more"),
            "{why}"
        );
        assert!(
            check("(module)")
                .unwrap_err()
                .contains("a library module exporting nothing")
        );
        let why = check(r#"(module (func (export "f")) (func (export "g")))"#).unwrap_err();
        assert!(why.contains("exporting `f` and `g` ("), "{why}");
    }

    #[test]
    fn start_types_are_read_through_imports() {
        let why = check(
            r#"(module (type (func (param i32))) (import "m" "f" (func (type 0)))
                (func (export "_start") (param i64) (result f32) f32.const 0))"#,
        )
        .unwrap_err();
        assert_eq!(why, "signature (i64) -> (f32)");
        assert_eq!(
            check(r#"(module (import "m" "f" (func)) (func (export "_start")))"#),
            Ok(())
        );
    }

    #[test]
    fn components_need_cli_run_and_nested_modules_are_skipped() {
        let why = check(
            r#"(component
                (core module $m (func (export "_start")) (func (export "add") (param i32 i32) (result i32) local.get 0))
                (core instance $i (instantiate $m))
                (func (export "add") (param "a" u32) (param "b" u32) (result u32) (canon lift (core func $i "add"))))"#,
        )
        .unwrap_err();
        assert!(
            why.contains("a component exporting `add` (it does not export `wasi:cli/run`)"),
            "{why}"
        );
        assert!(is_cli_run("wasi:cli/run@0.2.3"));
        assert!(!is_cli_run("wasi:cli/runner"));
    }

    // See: #20
    #[test]
    fn a_library_initialize_must_be_a_function_of_no_arguments_and_results() {
        let library = |wat: &str| {
            check_library(&wat::parse_str(wat).unwrap()).map_err(|e| match e {
                LoadErrorKind::InitializeSignature { found } => found,
                other => format!("{other:?}"),
            })
        };
        assert_eq!(library(r#"(module (func (export "_initialize")))"#), Ok(()));
        assert_eq!(library(r#"(module (func (export "add")))"#), Ok(()));
        assert_eq!(
            library(r#"(module (func (export "_initialize") (param i32)))"#),
            Err("(i32) -> ()".into())
        );
        assert_eq!(
            library(r#"(module (func (export "_initialize") (result i64) i64.const 0))"#),
            Err("() -> (i64)".into())
        );
        assert_eq!(
            library(r#"(module (global (export "_initialize") i32 (i32.const 0)))"#),
            Err("global".into())
        );
        // A command's `_initialize` is not looked at when it loads as one.
        assert_eq!(
            check(r#"(module (func (export "_start")) (func (export "_initialize") (param i32)))"#),
            Ok(())
        );
    }

    #[test]
    fn unreadable_bytes_are_left_to_the_compiler() {
        assert!(check_command(b"\0asm\x01\0\0\0\x07\xff").is_ok());
    }

    #[test]
    fn guest_names_are_escaped() {
        let why = check(r#"(module (func (export "a\1b[31m")))"#).unwrap_err();
        assert!(!why.contains('\u{1b}'), "{why}");
    }
}
