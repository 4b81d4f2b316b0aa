//! Validating a guest with `wasmparser` before wasmtime compiles it, with
//! exactly the features the engine has: a module that needs a proposal the
//! policy left off is refused in the time validation takes, naming the
//! proposal and the policy key that allows it, instead of after Cranelift
//! has run (or with wasmtime's message, which names neither).

use super::config::wasm_features;
use super::program::LoadErrorKind;
use crate::policy::{Proposal, Proposals};
use wasmparser::{BinaryReaderError, FuncValidatorAllocations, Parser, Payload, ValidPayload, Validator, WasmFeatures};

/// The order proposals are tried in when finding what a module needs: each
/// before any proposal whose features include its own, so that the
/// narrowest one is named (`function-references` before `gc`, and `gc` before
/// `exceptions`, which also brings GC types).
/// Proposals every engine has ([`Proposal::on_by_default`]) are not tried.
const SEARCH_ORDER: [Proposal; 9] = [
    Proposal::TailCall,
    Proposal::FunctionReferences,
    Proposal::Gc,
    Proposal::Exceptions,
    Proposal::MultiMemory,
    Proposal::Memory64,
    Proposal::RelaxedSimd,
    Proposal::CustomPageSizes,
    Proposal::WideArithmetic,
];

/// Validates `bytes` (a binary module or component) as an engine with
/// `proposals` would.
///
/// # Errors
///
/// [`LoadErrorKind::Proposal`] when the module is valid once some proposals
/// the engine lacks are on (naming them); [`LoadErrorKind::Invalid`]
/// otherwise, with wasmparser's message.
pub(super) fn validate(bytes: &[u8], proposals: Proposals) -> Result<(), LoadErrorKind> {
    let Err(first) = check(bytes, wasm_features(proposals), None) else {
        return Ok(());
    };
    let mut enabled = proposals;
    let mut needed = Proposals::EMPTY;
    let mut name = None;
    let mut error = first.clone();
    // Each round adds the proposal that gets the validator past the error it
    // stopped at, until the module validates or nothing helps; at most one
    // round per proposal. A round first asks whether all the proposals still
    // off together get past the error, so a module no proposal helps (the
    // usual invalid module) costs one more validation, not one per proposal.
    let everything = SEARCH_ORDER.into_iter().fold(proposals, Proposals::with);
    while gets_past(bytes, wasm_features(everything), error.offset())
        && let Some(p) = SEARCH_ORDER
            .into_iter()
            .filter(|p| !enabled.contains(*p))
            .find(|p| gets_past(bytes, wasm_features(enabled.with(*p)), error.offset()))
    {
        needed = needed.with(p);
        enabled = enabled.with(p);
        let name = *name.get_or_insert(p);
        match check(bytes, wasm_features(enabled), None) {
            Ok(()) => {
                return Err(LoadErrorKind::Proposal {
                    name,
                    needed,
                    detail: first.message().to_string(),
                });
            }
            Err(e) => error = e,
        }
    }
    let threads = WasmFeatures::THREADS | WasmFeatures::SHARED_EVERYTHING_THREADS;
    if gets_past(bytes, wasm_features(proposals) | threads, first.offset()) {
        return Err(LoadErrorKind::Invalid(format!(
            "{first}; the module uses Wasm threads or shared memory, which wasmcell never turns on"
        )));
    }
    Err(LoadErrorKind::Invalid(first.to_string()))
}

/// Whether validation with `features` passes the point `offset` where it
/// failed before: it succeeds, or fails only later in the module.
fn gets_past(bytes: &[u8], features: WasmFeatures, offset: usize) -> bool {
    match check(bytes, features, Some(offset)) {
        Ok(()) => true,
        Err(e) => e.offset() > offset,
    }
}

/// Validates `bytes` with `features`, function bodies in order with the
/// sections, so that with `stop_after` it can stop at the first payload that
/// starts past that offset: everything before it is valid.
fn check(bytes: &[u8], features: WasmFeatures, stop_after: Option<usize>) -> Result<(), BinaryReaderError> {
    #[cfg(test)]
    tests::CHECKS.with(|n| n.set(n.get() + 1));
    let mut validator = Validator::new_with_features(features);
    let mut parser = Parser::new(0);
    parser.set_features(features);
    let mut allocs = FuncValidatorAllocations::default();
    for payload in parser.parse_all(bytes) {
        let payload = payload?;
        if let (Some(stop), Some(start)) = (stop_after, start_of(&payload))
            && start > stop
        {
            return Ok(());
        }
        if let ValidPayload::Func(func, body) = validator.payload(&payload)? {
            let mut func = func.into_validator(std::mem::take(&mut allocs));
            func.validate(&body)?;
            allocs = func.into_allocations();
        }
    }
    Ok(())
}

/// Where a payload starts in the binary, when it says.
fn start_of(payload: &Payload<'_>) -> Option<usize> {
    match payload {
        Payload::CodeSectionEntry(body) => Some(body.range().start),
        Payload::Version { range, .. } => Some(range.start),
        Payload::End(offset) => Some(*offset),
        other => other.as_section().map(|(_, range)| range.start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Validation passes made on this thread.
        pub(super) static CHECKS: Cell<usize> = const { Cell::new(0) };
    }

    fn needs(wat: &str) -> Proposals {
        let bytes = wat::parse_str(wat).unwrap();
        match validate(&bytes, Proposals::EMPTY) {
            Err(LoadErrorKind::Proposal { needed, .. }) => {
                assert!(validate(&bytes, needed).is_ok(), "{wat}: valid with {needed}");
                needed
            }
            other => panic!("{wat}: expected a proposal, got {other:?}"),
        }
    }

    #[test]
    fn names_the_proposal_a_module_needs() {
        let cases = [
            (
                r#"(module (tag $e) (func (export "_start") (block $h (try_table (catch_all $h) (throw $e)))))"#,
                "exceptions",
            ),
            (r#"(module (func $f (return_call $f)))"#, "tail-call"),
            (r#"(module (memory 1) (memory 1))"#, "multi-memory"),
            (r#"(module (memory i64 1))"#, "memory64"),
            (r#"(module (table 1 externref))"#, "gc"),
            (
                r#"(module (type $s (struct (field i32))) (func (drop (struct.new $s (i32.const 1)))))"#,
                "gc",
            ),
            (
                r#"(module (type $t (func)) (func (param (ref $t)) (call_ref $t (local.get 0))))"#,
                "function-references",
            ),
            (r#"(module (memory 1 (pagesize 1)))"#, "custom-page-sizes"),
            (
                r#"(module (func (result i64 i64) (i64.add128 (i64.const 1) (i64.const 2) (i64.const 3) (i64.const 4))))"#,
                "wide-arithmetic",
            ),
            (
                r#"(module (func (result v128) (i32x4.relaxed_trunc_f32x4_s (v128.const i32x4 0 0 0 0))))"#,
                "relaxed-simd",
            ),
            (
                r#"(module (func $f (return_call $f)) (tag) (func (throw 0)))"#,
                "exceptions, tail-call",
            ),
        ];
        for (wat, expected) in cases {
            assert_eq!(needs(wat).to_string(), expected, "{wat}");
        }
    }

    // See: #13
    #[test]
    fn an_invalid_module_is_not_validated_once_per_proposal() {
        // A large invalid module costs a validation pass per try; no
        // proposal helps this one, so the search must not try each.
        let bytes = wat::parse_str(r#"(module (func (result i32)))"#).unwrap();
        CHECKS.with(|n| n.set(0));
        assert!(matches!(
            validate(&bytes, Proposals::EMPTY),
            Err(LoadErrorKind::Invalid(_))
        ));
        let passes = CHECKS.with(Cell::get);
        assert!(passes <= 3, "{passes} validation passes for a module no proposal helps");
    }

    // See: #25
    #[test]
    fn extended_constant_expressions_need_no_proposal() {
        let bytes = wat::parse_str(r#"(module (global i32 (i32.add (i32.const 1) (i32.const 2))))"#).unwrap();
        assert!(validate(&bytes, Proposals::EMPTY).is_ok());
    }

    #[test]
    fn invalid_modules_stay_invalid() {
        let bytes = wat::parse_str(r#"(module (func (result i32)))"#).unwrap();
        assert!(matches!(
            validate(&bytes, Proposals::EMPTY),
            Err(LoadErrorKind::Invalid(_))
        ));
        let shared = wat::parse_str(r#"(module (memory 1 1 shared))"#).unwrap();
        let Err(LoadErrorKind::Invalid(why)) = validate(&shared, Proposals::EMPTY) else {
            panic!("shared memory must stay refused")
        };
        assert!(why.contains("threads or shared memory"), "{why}");
        assert!(validate(b"\0asm\x01\0\0\0", Proposals::EMPTY).is_ok());
    }
}
