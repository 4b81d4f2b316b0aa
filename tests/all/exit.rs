//! How a guest's exit status and panics surface in the [`Outcome`]: statuses pass through
//! (within 0..=125), out-of-range ones map to 1 with an explanation, a panic is a trap.

use crate::{assert_status, assert_test_exists, both, run, stdout, wait_for, wasmcell_command};
use wasmcell::{EXIT_LOAD, EXIT_OUT_OF_RANGE, EXIT_TRAP, LoadErrorKind, Outcome, Policy, Sandbox, Status};
use wasmcell_artifacts::{EXIT_CODE, EXIT_CODE_COMPONENT, EXIT_PANIC, EXIT_PANIC_COMPONENT};

wasmcell_artifacts::foreach_exit!(assert_test_exists);

fn exit_with(guest: &str, code: &str) -> Outcome {
    run(Policy::deny_all(), guest, &[code])
}

#[test]
fn exit_code() {
    for guest in both(EXIT_CODE, EXIT_CODE_COMPONENT) {
        let outcome = run(Policy::deny_all(), guest, &[] as &[&str]);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(outcome.exit_code(), 0, "{guest}");
        assert_eq!(outcome.trap, None, "{guest}");
        assert_eq!(
            outcome.ending_line(&Policy::deny_all()),
            None,
            "{guest}: a plain exit needs no explanation"
        );

        let outcome = exit_with(guest, "0");
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(outcome.exit_code(), 0, "{guest}");
    }
}

/// A wasip1 module's status passes through as long as it cannot be mistaken for one of the
/// sandbox's own codes (0..=125).
#[test]
fn exit_code_in_range_passes_through_for_modules() {
    for code in [1, 7, 42, 125] {
        let outcome = exit_with(EXIT_CODE, &code.to_string());
        assert_status(&outcome, Status::Exited(code));
        assert_eq!(i32::from(outcome.exit_code()), code);
        assert_eq!(outcome.guest_exit_status(), Some(code));
        assert_eq!(outcome.ending_line(&Policy::deny_all()), None, "exit {code}");
    }
}

/// WASI 0.2's `exit` carries only ok/err, so a component reports every non-zero status as 1.
#[test]
fn exit_code_nonzero_is_1_for_components() {
    for code in ["1", "7", "125", "126", "200"] {
        let outcome = exit_with(EXIT_CODE_COMPONENT, code);
        assert_status(&outcome, Status::Exited(1));
        assert_eq!(outcome.exit_code(), 1, "exit {code}");
        assert_eq!(outcome.trap, None, "exit {code}");
    }
}

/// Statuses of 126 and above (and negative ones) would collide with the sandbox's own codes:
/// the status is kept in the outcome, the exit code becomes 1, and `describe` says why.
#[test]
fn exit_code_out_of_range_maps_to_1() {
    for code in [126, 134, 200, 255, 256, -1] {
        let outcome = exit_with(EXIT_CODE, &code.to_string());
        assert_status(&outcome, Status::Exited(code));
        assert_eq!(outcome.exit_code(), EXIT_OUT_OF_RANGE, "exit {code}");
        assert_eq!(outcome.guest_exit_status(), Some(code));
        assert_eq!(outcome.trap, None, "exit {code} is an exit, not a trap");
        let why = outcome
            .ending_line(&Policy::deny_all())
            .unwrap_or_else(|| panic!("exit {code} should be explained"));
        assert!(why.contains(&format!("status {code}")), "exit {code}: {why}");
        assert!(why.contains("0..=125"), "exit {code}: {why}");
        assert_eq!(outcome.to_json()["exit_code"], 1);
        assert_eq!(outcome.to_json()["guest_exit_status"], code);
    }
}

#[test]
fn exit_panic() {
    for guest in both(EXIT_PANIC, EXIT_PANIC_COMPONENT) {
        let outcome = run(Policy::deny_all(), guest, &[] as &[&str]);
        assert_status(&outcome, Status::Trap);
        assert_eq!(outcome.exit_code(), EXIT_TRAP, "{guest}");
        let trap = outcome
            .trap
            .as_deref()
            .unwrap_or_else(|| panic!("{guest}: a trap has a message"));
        assert!(trap.contains("unreachable"), "{guest}: trap message: {trap}");
        assert_eq!(stdout(&outcome), "about to panic\n", "{guest}");
        let stderr = String::from_utf8_lossy(&outcome.stderr);
        assert!(
            stderr.contains("guest panicked on purpose"),
            "{guest}: stderr: {stderr}"
        );
        let why = outcome.ending_line(&Policy::deny_all()).expect("a trap is explained");
        assert!(
            why.starts_with("guest trapped: ") && why.contains("unreachable"),
            "{guest}: {why}"
        );
        assert_eq!(outcome.to_json()["status"], "trap");
    }
}

/// `_start` fixtures that are not `() -> ()`: (file name, module, the type the
/// error must show).
const BAD_STARTS: [(&str, &str, &str); 3] = [
    (
        "start_param.wat",
        r#"(module (func (export "_start") (param i32)))"#,
        "(i32) -> ()",
    ),
    (
        "start_result.wat",
        r#"(module (func (export "_start") (result i32) (i32.const 0)))"#,
        "() -> (i32)",
    ),
    (
        "start_both.wat",
        r#"(module (func (export "_start") (param i64 f32) (result i32 i32) (i32.const 0) (i32.const 0)))"#,
        "(i64, f32) -> (i32, i32)",
    ),
];

// See: #9
/// A `_start` the runner cannot call is a module that is not a command: a
/// load error (nothing ran), not a trap (134) after instantiation.
#[test]
fn start_with_params_or_results_is_a_load_error() {
    let sandbox = Sandbox::builder().policy(Policy::deny_all()).build().unwrap();
    for (name, wat, found) in BAD_STARTS {
        let err = sandbox
            .load_bytes(name, wat.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("{name}: loaded"));
        match err.kind() {
            LoadErrorKind::StartSignature { found: f } => assert_eq!(f, found, "{name}"),
            other => panic!("{name}: expected StartSignature, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(found) && msg.contains("`() -> ()`"), "{name}: {msg}");
    }
    // Control: the right type loads and runs.
    let good = sandbox
        .load_bytes("start_ok.wat", br#"(module (func (export "_start")))"#)
        .unwrap();
    assert_status(&sandbox.run_program(&good, &[] as &[&str]).unwrap(), Status::Exited(0));
}

// See: #9
#[test]
fn start_with_params_or_results_exits_126_from_run_and_compile() {
    let dir = tempfile::tempdir().unwrap();
    for (name, wat, found) in BAD_STARTS {
        let path = dir.path().join(name);
        std::fs::write(&path, wat).unwrap();
        let path = path.to_str().unwrap();
        let cwasm = dir.path().join("out.cwasm");
        for args in [vec!["run", path], vec!["compile", path, "-o", cwasm.to_str().unwrap()]] {
            let out = wait_for(wasmcell_command().args(&args).spawn().unwrap());
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(i32::from(EXIT_LOAD)), "{args:?}: {err}");
            assert!(err.contains(found) && err.contains("_start"), "{args:?}: {err}");
        }
        assert!(
            !cwasm.exists(),
            "{name}: compile wrote code for a module that cannot run"
        );
    }
}
