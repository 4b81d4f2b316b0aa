//! wasmcell's integration tests: one binary, one module per suite (the layout
//! of wasmtime's `tests/all`). Guests come from `modules/`, built for
//! wasm32-wasip1 and wasm32-wasip2 by the `wasmcell-artifacts` build script.

mod cli;
mod clocks;
mod env;
mod exit;
mod fs;
mod limits;
mod matrix;
mod net;
mod policy;
mod random;
mod stdio;

use std::path::Path;
use wasmcell::{Outcome, Policy, Sandbox, Status};

/// Fails to compile unless the enclosing module has a `#[test] fn $name`, so
/// every guest in `modules/` has a test of the same name.
#[macro_export]
macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}

/// The two builds of a guest: the wasm32-wasip1 core module and the
/// wasm32-wasip2 component. Most tests run both.
pub fn both(module: &'static str, component: &'static str) -> [&'static str; 2] {
    [module, component]
}

/// Runs `module` under `policy`, capturing its output.
pub fn run(policy: Policy, module: &str, args: &[&str]) -> Outcome {
    Sandbox::builder()
        .policy(policy)
        .build()
        .expect("sandbox builds")
        .run(module, args)
        .unwrap_or_else(|e| panic!("running `{module}` failed: {e:#}"))
}

/// Like [`run`], feeding `stdin` to the guest.
pub fn run_with_stdin(policy: Policy, module: &str, args: &[&str], stdin: &[u8]) -> Outcome {
    Sandbox::builder()
        .policy(policy)
        .stdin(stdin.to_vec())
        .build()
        .expect("sandbox builds")
        .run(module, args)
        .unwrap_or_else(|e| panic!("running `{module}` failed: {e:#}"))
}

/// A policy from inline TOML, with relative paths resolved against `base`.
pub fn policy_toml(text: &str, base: &Path) -> Policy {
    Policy::from_toml(text, base).unwrap_or_else(|e| panic!("test policy is invalid: {e}"))
}

/// Asserts the outcome's status, printing the guest's output only on failure
/// (wasmtime's test-programs do the same).
#[track_caller]
pub fn assert_status(outcome: &Outcome, expected: Status) {
    assert_eq!(
        outcome.status,
        expected,
        "unexpected status; trap: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        outcome.trap,
        String::from_utf8_lossy(&outcome.stdout),
        String::from_utf8_lossy(&outcome.stderr),
    );
}

/// The guest's captured stdout as text.
pub fn stdout(outcome: &Outcome) -> String {
    String::from_utf8_lossy(&outcome.stdout).into_owned()
}
