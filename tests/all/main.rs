//! wasmcell's integration tests: one binary, one module per suite (the layout
//! of wasmtime's `tests/all`). Guests come from `modules/`, built for
//! wasm32-wasip1 and wasm32-wasip2 by the `wasmcell-artifacts` build script.

mod broker;
mod cache;
mod cli;
mod clocks;
mod corpus;
mod cpu;
mod embed;
mod env;
mod exit;
mod fs;
mod http_tls;
mod https_server;
mod invoke;
mod learn;
mod limits;
mod matrix;
mod module;
mod net;
mod policy;
mod random;
mod stdio;
mod wall;
mod wasm;
mod worker;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use wasmcell::{Outcome, Policy, Sandbox, Status};

/// The `wasmcell` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_wasmcell");

/// The repository. These tests belong to the command line's package (`cli/`),
/// which cargo runs them in; its commands run at the top, as a user's do.
pub const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Longest any `wasmcell` child may take before the test kills it and fails.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// A `wasmcell` command with stdin closed and output captured. Its compile
/// cache is the tests' own, so a test run neither reads nor fills the user's.
pub fn wasmcell_command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.current_dir(REPO);
    cmd.env(
        "WASMCELL_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasmcell-cache"),
    );
    cmd
}

/// Waits for `child`, collecting its output; kills it and fails the test if it
/// outlives [`WATCHDOG`], so a hung sandbox cannot hang the suite.
pub fn wait_for(child: Child) -> Output {
    wait_for_with(child, WATCHDOG)
}

/// Like [`wait_for`], with a watchdog of `limit`: for a guest that compiles
/// for minutes on its first run (the corpus's 65.7 MiB yosys).
pub fn wait_for_with(mut child: Child, limit: Duration) -> Output {
    fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for wasmcell") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wasmcell did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A stream whose reader has gone: writing to it fails with `EPIPE`.
pub fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    writer.into()
}

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
