//! Fuzz checks shared by the cargo-fuzz targets in `fuzz/fuzz_targets/` and
//! the deterministic smoke test `tests/fuzz_smoke.rs`, which includes this
//! file as a module. Both feed bytes to the same `check_*` functions, so a
//! crash a long fuzz run finds is a case the smoke could have generated too.
//!
//! Each check turns its bytes into a case with [`arbitrary::Unstructured`],
//! runs it through the wasmcell library, and panics when a property fails:
//!
//! - nothing in wasmcell panics;
//! - a policy either loads or is refused with a `PolicyError` whose message
//!   displays; a loaded policy that names only paths inside the case's temp
//!   dir runs a small probe guest to an `Outcome` (or a `LoadError`);
//! - a module is either refused with a `LoadError` or runs to an `Outcome`
//!   (never another `Err`), within its timeout plus a margin; a module that
//!   wasm-smith generated with only the proposals its policy turns on (any of
//!   `[wasm] proposals`), WASI imports and a `_start` export always loads;
//! - the limits a case draws are ones the policy loader accepts: every range
//!   starts at the policy's own least value (`Limits::MIN_*`);
//! - a growth sequence (`growth.rs`) ends as a reference of wasmtime's and
//!   the limiter's decisions says, and reports exactly the guest's real size
//!   as its peak;
//! - a generated `[net]` table loads, and every generated use is decided as
//!   a reference of the README's rules says (`net.rs`);
//! - an outgoing HTTP request (`http.rs`) is allowed, refused and recorded
//!   as a reference of the README's rules says, and one allowed to the local
//!   server arrives with `Host:` rebuilt from the decided host and port;
//! - host RSS during a run grows by at most the run's `limits.memory` plus
//!   [`RSS_OVERHEAD`] (Linux only: peak RSS is reset through
//!   `/proc/self/clear_refs` before the run and read as `VmHWM` after it).

#[path = "growth.rs"]
mod growth;
#[path = "http.rs"]
mod http;
#[path = "net.rs"]
mod net;

pub use growth::{GrowthCase, check_growth};
pub use http::{HttpCase, check_http};
pub use net::{NetCase, check_net};

use arbitrary::{Result as AResult, Unstructured};
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use wasmcell::policy::{Proposal, Proposals};
use wasmcell::{Engine, EngineConfig, Input, Limits, LoadError, Outcome, Output, Policy, RunOptions, Sandbox, Status};

/// What host RSS may grow by during one run beyond the run's `limits.memory`:
/// the instance, its fiber stack, WASI state and captured output.
pub const RSS_OVERHEAD: u64 = 48 << 20;

/// How much longer than its `limits.timeout` a run may take before the check
/// calls it a hang (generous: debug builds on a loaded 2-core machine).
pub const HANG_MARGIN: Duration = Duration::from_secs(10);

/// What one policy case did, for the smoke's tally.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum PolicyCase {
    /// The bytes ran out before a case was built.
    #[default]
    Skipped,
    /// The policy was refused with a `PolicyError`.
    Refused,
    /// The policy loaded; the probe was not run (it names paths outside the
    /// case's dir, or needs an engine the check does not keep).
    Loaded,
    /// The policy loaded and the probe guest ran to this status.
    Ran(Status),
    /// The policy loaded and refused the probe with a `LoadError`.
    ProbeRefused,
    /// The policy loaded, but a stdio file it names could not be opened.
    StdioUnavailable,
}

/// What one module case did, for the smoke's tally.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ModuleCase {
    /// Whether the bytes were turned into a module at all.
    pub generated: bool,
    /// Whether the module loaded (otherwise a `LoadError` refused it).
    pub loaded: bool,
    /// How the run ended, when it ran.
    pub status: Option<Status>,
    /// Peak RSS growth during the run minus its `limits.memory`, in bytes,
    /// when it could be measured.
    pub rss_over_limit: Option<i64>,
}

// ---------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------

/// The bundled policies, as seeds for mutation. Written into each case's dir
/// under their own names, so their `extends` resolve.
const SEED_POLICIES: &[(&str, &str)] = &[
    ("deny-all.toml", include_str!("../../policies/deny-all.toml")),
    ("deterministic.toml", include_str!("../../policies/deterministic.toml")),
    ("interactive.toml", include_str!("../../policies/interactive.toml")),
    (
        "loopback-client.toml",
        include_str!("../../policies/loopback-client.toml"),
    ),
    ("read-only.toml", include_str!("../../policies/read-only.toml")),
    ("scratch.toml", include_str!("../../policies/scratch.toml")),
    ("tight.toml", include_str!("../../policies/tight.toml")),
];

/// Tokens a mutation splices in: the schema's keys, table headers and values
/// near the edges of what the loader accepts.
const POLICY_TOKENS: &[&str] = &[
    "\n",
    "=",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "#",
    "\\",
    "\\u0000",
    "\0",
    "\x1b[31m",
    "-",
    "_",
    "0",
    "1",
    "-1",
    "9223372036854775807",
    "18446744073709551616",
    "1e400",
    "nan",
    "inf",
    "true",
    "false",
    "extends",
    "[limits]",
    "fuel",
    "memory",
    "timeout",
    "stack",
    "output",
    "module-size",
    "handles",
    "[fs]",
    "[[fs.dirs]]",
    "host",
    "guest",
    "access",
    "\"read-only\"",
    "\"read-write\"",
    "[env]",
    "vars",
    "inherit",
    "[stdio]",
    "stdin",
    "stdout",
    "stderr",
    "\"null\"",
    "\"inherit\"",
    "{ file = \"in.txt\" }",
    "[clocks]",
    "mode",
    "\"frozen\"",
    "\"host\"",
    "start",
    "resolution",
    "[random]",
    "seed",
    "[net]",
    "tcp-connect",
    "tcp-bind",
    "udp-bind",
    "udp-send",
    "dns",
    "http",
    "\"4 GiB\"",
    "\"1 EiB\"",
    "\"0\"",
    "\"1ns\"",
    "\"30days\"",
    "\"9999-12-31T23:59:60Z\"",
    "\"2554-07-22T00:00:00Z\"",
    "\"1969-12-31T23:59:59Z\"",
    "\"data\"",
    "\"scratch\"",
    "\"..\"",
    "\"/\"",
    "\"deny-all.toml\"",
    "\"read-only.toml\"",
    "\"127.0.0.1:*\"",
    "\"[::1]:1-65535\"",
    "\"0.0.0.0/0:*\"",
    "\"http://localhost:*\"",
];

/// Serializes the checks: peak RSS is process-wide, so a measured run must
/// not share the process with another case's work.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Loads a policy built from `data` (raw TOML, a generated file, a graph of
/// files that extend each other, or a mutated bundled policy), and runs the
/// probe guest under it when it loads and stays inside the case's dir.
///
/// # Panics
///
/// When a property in the module docs fails.
pub fn check_policy(data: &[u8]) -> PolicyCase {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("create a temp dir");
    let root = std::fs::canonicalize(dir.path()).expect("canonicalize the temp dir");
    lay_out_case_dir(&root);
    let mut u = Unstructured::new(data);
    let loaded = match build_policy(&mut u, &root) {
        Ok(loaded) => loaded,
        Err(_) => return PolicyCase::Skipped,
    };
    match loaded {
        Err(err) => {
            // Displaying the error must not panic, and must say something.
            let shown = err.to_string();
            assert!(!shown.trim().is_empty(), "empty policy error: {err:?}");
            let _ = (err.key_name(), err.line(), err.path());
            PolicyCase::Refused
        }
        Ok(policy) => run_probe(&policy, &root),
    }
}

/// The tree every policy case may name: directories `a`, `a/c`, `b`, `data`,
/// `scratch` and `out`, and files `in.txt` and `data/hello.txt`.
fn lay_out_case_dir(root: &Path) {
    for d in ["a/c", "b", "data", "scratch", "out"] {
        std::fs::create_dir_all(root.join(d)).expect("create case dirs");
    }
    std::fs::write(root.join("in.txt"), b"stdin for the probe\n").expect("write in.txt");
    std::fs::write(root.join("data/hello.txt"), b"hello from policies/data\n").expect("write hello.txt");
}

fn build_policy(u: &mut Unstructured, root: &Path) -> AResult<Result<Policy, wasmcell::PolicyError>> {
    Ok(match u.int_in_range(0u8..=3)? {
        // Raw text, resolved against the case dir.
        0 => {
            let text = String::from_utf8_lossy(u.bytes(u.len())?).into_owned();
            Policy::from_toml(&text, root)
        }
        // One generated file.
        1 => {
            let text = gen_policy(u, &[])?;
            std::fs::write(root.join("p0.toml"), text).expect("write policy");
            Policy::from_file(root.join("p0.toml"))
        }
        // A graph of generated files extending each other (self-loops,
        // cycles, duplicates and missing files included).
        2 => {
            let n = u.int_in_range(1usize..=5)?;
            let names: Vec<String> = (0..n).map(|i| format!("p{i}.toml")).collect();
            for name in &names {
                let text = gen_policy(u, &names)?;
                std::fs::write(root.join(name), text).expect("write policy");
            }
            Policy::from_file(root.join("p0.toml"))
        }
        // A bundled policy, mutated.
        _ => {
            for (name, text) in SEED_POLICIES {
                std::fs::write(root.join(name), text).expect("write seed policy");
            }
            let (name, seed) = u.choose(SEED_POLICIES)?;
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..u.int_in_range(1u8..=4)? {
                mutate(u, &mut bytes)?;
            }
            std::fs::write(root.join(name), &bytes).expect("write mutated policy");
            Policy::from_file(root.join(name))
        }
    })
}

/// One mutation of `bytes`: splice in a token, delete or duplicate a range,
/// or overwrite bytes with random ones.
fn mutate(u: &mut Unstructured, bytes: &mut Vec<u8>) -> AResult<()> {
    let at = u.int_in_range(0..=bytes.len())?;
    let len = u.int_in_range(0..=(bytes.len() - at).min(32))?;
    match u.int_in_range(0u8..=3)? {
        0 => {
            let token = u.choose(POLICY_TOKENS)?;
            bytes.splice(at..at + len, token.bytes());
        }
        1 => {
            bytes.drain(at..at + len);
        }
        2 => {
            let copy = bytes[at..at + len].to_vec();
            bytes.splice(at..at, copy);
        }
        _ => {
            for b in &mut bytes[at..at + len] {
                *b = u.arbitrary()?;
            }
        }
    }
    Ok(())
}

/// A policy file from the schema's keys with values near the edges of what
/// the loader accepts, and now and then an unknown key or a bad type.
/// `files` are the names `extends` may point at (plus a few that do not exist).
fn gen_policy(u: &mut Unstructured, files: &[String]) -> AResult<String> {
    const INTS: &[&str] = &[
        "0",
        "1",
        "15",
        "16",
        "4096",
        "65536",
        "1000000",
        "1000001",
        "-1",
        "9223372036854775807",
    ];
    const SIZES: &[&str] = &[
        "0",
        "1",
        "4096",
        "\"64 KiB\"",
        "\"1MiB\"",
        "\"16 MiB\"",
        "\"4 GiB\"",
        "\"5 GiB\"",
        "\"64 MiB\"",
        "\"65 MiB\"",
        "\"1 EiB\"",
        "\"16 EiB\"",
        "\"1.5 MiB\"",
        "\"-1 KiB\"",
        "\"lots\"",
        "\"\"",
        "true",
    ];
    const DURATIONS: &[&str] = &[
        "\"1ns\"",
        "\"1ms\"",
        "\"50ms\"",
        "\"1s\"",
        "\"10s\"",
        "\"30days\"",
        "\"31days\"",
        "\"0s\"",
        "\"584942417355years\"",
        "\"soon\"",
        "5",
    ];
    const STARTS: &[&str] = &[
        "\"2000-01-01T00:00:00Z\"",
        "\"1970-01-01T00:00:00Z\"",
        "\"1969-12-31T23:59:59Z\"",
        "\"2262-04-11T23:47:16Z\"",
        "\"9999-12-31T23:59:59Z\"",
        "\"2020-02-30T00:00:00Z\"",
        "\"yesterday\"",
    ];
    const HOSTS: &[&str] = &[
        "\"a\"",
        "\"b\"",
        "\"a/c\"",
        "\"data\"",
        "\"scratch\"",
        "\"missing\"",
        "\"in.txt\"",
        "\".\"",
        "\"a/..\"",
        "\"\"",
    ];
    const GUESTS: &[&str] = &[
        "\"/a\"",
        "\"/b\"",
        "\"/\"",
        "\"\"",
        "\"a\"",
        "\"/a/../b\"",
        "\"/a/\"",
        "\"/\\u0000\"",
        "\"/data\"",
    ];
    const ACCESS: &[&str] = &["\"read-only\"", "\"read-write\"", "\"write-only\"", "1"];
    const INPUTS: &[&str] = &[
        "\"null\"",
        "\"inherit\"",
        "{ file = \"in.txt\" }",
        "{ file = \"missing.txt\" }",
        "{ file = \"a\" }",
        "\"file\"",
        "{ pipe = 1 }",
    ];
    const OUTPUTS: &[&str] = &[
        "\"null\"",
        "\"inherit\"",
        "{ file = \"out/o.txt\" }",
        "{ file = \"out/e.txt\" }",
        "{ file = \"a\" }",
        "{ file = \"nodir/o.txt\" }",
        "\"stdout\"",
    ];
    const NET: &[&str] = &[
        "\"127.0.0.1:8080\"",
        "\"10.1.0.0/16:443\"",
        "\"[::1]:1000-2000\"",
        "\"127.0.0.1:*\"",
        "\"1.2.3.4/33:1\"",
        "\"[::1]/129:1\"",
        "\":0\"",
        "\"*:*\"",
        "\"127.0.0.1:70000\"",
        "\"127.0.0.1:5-3\"",
        "\"[::1\"",
        "\"\"",
    ];
    const HTTP: &[&str] = &[
        "\"https://example.com:*\"",
        "\"http://[::1]:80\"",
        "\"ftp://x\"",
        "\"http://\"",
        "\"https://a:99999\"",
    ];
    const ENV_NAMES: &[&str] = &["LANG", "HOME", "A=B", "", "\\u0000", "PATH", "\\u001b[2J"];

    let mut s = String::new();
    if !files.is_empty() || u.ratio(1, 4)? {
        let mut targets = Vec::new();
        for _ in 0..u.int_in_range(0u8..=3)? {
            let t = match u.int_in_range(0u8..=5)? {
                0 => "missing.toml".to_string(),
                1 => "a".to_string(),
                _ if !files.is_empty() => u.choose(files)?.clone(),
                _ => "deny-all.toml".to_string(),
            };
            targets.push(format!("{t:?}"));
        }
        s += &format!("extends = [{}]\n", targets.join(", "));
    }
    let pick = |u: &mut Unstructured, list: &[&str]| -> AResult<String> { Ok(u.choose(list)?.to_string()) };
    if u.arbitrary()? {
        s += "[limits]\n";
        for (key, list) in [
            ("fuel", INTS),
            ("memory", SIZES),
            ("timeout", DURATIONS),
            ("stack", SIZES),
            ("output", SIZES),
            ("module-size", SIZES),
            ("handles", INTS),
        ] {
            if u.ratio(1, 3)? {
                s += &format!("{key} = {}\n", pick(u, list)?);
            }
        }
    }
    for _ in 0..u.int_in_range(0u8..=3)? {
        s += &format!(
            "[[fs.dirs]]\nhost = {}\nguest = {}\naccess = {}\n",
            pick(u, HOSTS)?,
            pick(u, GUESTS)?,
            pick(u, ACCESS)?
        );
    }
    if u.ratio(1, 3)? {
        s += "[env]\n";
        let mut vars = Vec::new();
        for _ in 0..u.int_in_range(0u8..=3)? {
            vars.push(format!("\"{}\" = \"{}\"", pick(u, ENV_NAMES)?, pick(u, ENV_NAMES)?));
        }
        s += &format!("vars = {{ {} }}\n", vars.join(", "));
        let mut inherit = Vec::new();
        for _ in 0..u.int_in_range(0u8..=2)? {
            inherit.push(format!("\"{}\"", pick(u, ENV_NAMES)?));
        }
        s += &format!("inherit = [{}]\n", inherit.join(", "));
    }
    if u.arbitrary()? {
        s += "[stdio]\n";
        if u.arbitrary()? {
            s += &format!("stdin = {}\n", pick(u, INPUTS)?);
        }
        if u.arbitrary()? {
            s += &format!("stdout = {}\n", pick(u, OUTPUTS)?);
        }
        if u.arbitrary()? {
            s += &format!("stderr = {}\n", pick(u, OUTPUTS)?);
        }
    }
    if u.ratio(1, 3)? {
        s += "[clocks]\n";
        if u.ratio(3, 4)? {
            s += &format!("mode = {}\n", pick(u, &["\"host\"", "\"frozen\"", "\"fast\""])?);
        }
        if u.arbitrary()? {
            s += &format!("start = {}\n", pick(u, STARTS)?);
        }
        if u.ratio(1, 3)? {
            s += &format!("resolution = {}\n", pick(u, DURATIONS)?);
        }
    }
    if u.ratio(1, 4)? {
        s += &format!("[random]\nseed = {}\n", pick(u, INTS)?);
    }
    if u.ratio(1, 3)? {
        s += "[net]\n";
        for key in ["tcp-connect", "tcp-bind", "udp-bind", "udp-send"] {
            if u.ratio(1, 3)? {
                s += &format!("{key} = [{}]\n", pick(u, NET)?);
            }
        }
        if u.arbitrary()? {
            s += &format!("dns = {}\n", pick(u, &["true", "false", "\"yes\""])?);
        }
        if u.ratio(1, 3)? {
            s += &format!("http = [{}]\n", pick(u, HTTP)?);
        }
    }
    if u.ratio(1, 16)? {
        s += "unknown-key = 1\n";
    }
    Ok(s)
}

/// A core module that touches every capability a policy shapes: stdout,
/// stderr, stdin, both clocks, randomness, the environment and the preopens.
const PROBE: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "clock_time_get" (func $time (param i32 i64 i32) (result i32)))
    (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 16) "probe\n")
    (func (export "_start")
        (i32.store (i32.const 0) (i32.const 16))
        (i32.store (i32.const 4) (i32.const 6))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
        (i32.store (i32.const 32) (i32.const 256))
        (i32.store (i32.const 36) (i32.const 64))
        (drop (call $read (i32.const 0) (i32.const 32) (i32.const 1) (i32.const 40)))
        (drop (call $time (i32.const 0) (i64.const 1) (i32.const 48)))
        (drop (call $time (i32.const 1) (i64.const 1) (i32.const 48)))
        (drop (call $random (i32.const 64) (i32.const 32)))
        (drop (call $env (i32.const 96) (i32.const 100)))
        (drop (call $prestat (i32.const 3) (i32.const 104)))))"#;

/// Whether every host path `policy` names lies inside `root`, so that running
/// a guest under it touches nothing else (a fuzzed policy may name any file,
/// and the host truncates output files).
fn contained(policy: &Policy, root: &Path) -> bool {
    let inside = |p: &Path| p.starts_with(root) && !p.components().any(|c| c == Component::ParentDir);
    let stdio_ok = |p: Option<&PathBuf>| p.is_none_or(|p| inside(p));
    policy.dirs().iter().all(|d| inside(&d.host))
        && stdio_ok(match policy.stdin() {
            Input::File(p) => Some(p),
            _ => None,
        })
        && [policy.stdout(), policy.stderr()].into_iter().all(|o| {
            stdio_ok(match o {
                Output::File(p) => Some(p),
                _ => None,
            })
        })
}

/// One engine per configuration the probe has needed, at most a few: a
/// fuzzed `limits.stack` could otherwise ask for a new engine every case.
fn probe_engine(config: EngineConfig) -> Option<Engine> {
    static ENGINES: OnceLock<Mutex<HashMap<EngineConfig, Engine>>> = OnceLock::new();
    let mut engines = ENGINES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(engine) = engines.get(&config) {
        return Some(engine.clone());
    }
    if engines.len() >= 8 {
        return None;
    }
    let engine = Engine::new(config).expect("create an engine");
    engines.insert(config, engine.clone());
    Some(engine)
}

fn run_probe(policy: &Policy, root: &Path) -> PolicyCase {
    let description = wasmcell::policy::summarize(policy);
    assert!(!description.is_empty());
    if !contained(policy, root) {
        return PolicyCase::Loaded;
    }
    let Some(engine) = probe_engine(EngineConfig::for_policy(policy)) else {
        return PolicyCase::Loaded;
    };
    let sandbox = Sandbox::builder()
        .engine(engine)
        .policy(policy.clone())
        .build()
        .unwrap_or_else(|e| panic!("a loaded policy's own engine was refused: {e:#}\n{description}"));
    let program = match sandbox.load_bytes("probe.wasm", PROBE.as_bytes()) {
        Ok(program) => program,
        Err(e) => {
            let _ = e.to_string();
            return PolicyCase::ProbeRefused;
        }
    };
    // Never read the test process's own stdin.
    let options = match policy.stdin() {
        Input::Inherit => RunOptions::new().stdin(Vec::new()),
        _ => RunOptions::new(),
    };
    let timeout = policy.limits().timeout.value.min(Duration::from_secs(60));
    let started = Instant::now();
    let result = sandbox.run_with(&program, &["arg"], options);
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) if e.downcast_ref::<LoadError>().is_some() => return PolicyCase::ProbeRefused,
        // A stdio file the policy names cannot be opened (its folder is
        // missing, it is a directory): the host cannot set up the run, which
        // is an error, not a guest status. Any other error is a finding.
        Err(e) if names_stdio_file(&format!("{e:#}"), policy) => return PolicyCase::StdioUnavailable,
        Err(e) => panic!("the probe's run failed instead of ending with a status: {e:#}\n{description}"),
    };
    assert!(
        started.elapsed() <= timeout + HANG_MARGIN,
        "the probe ran {:?} under a {timeout:?} timeout\n{description}",
        started.elapsed()
    );
    examine(&outcome, policy);
    PolicyCase::Ran(outcome.status)
}

/// Whether `message` names one of the stdio files `policy` sets.
fn names_stdio_file(message: &str, policy: &Policy) -> bool {
    let input = match policy.stdin() {
        Input::File(p) => Some(p),
        _ => None,
    };
    let outputs = [policy.stdout(), policy.stderr()].into_iter().filter_map(|o| match o {
        Output::File(p) => Some(p),
        _ => None,
    });
    input
        .into_iter()
        .chain(outputs)
        .any(|p| message.contains(&format!("`{}`", p.display())))
}

/// Everything a host does with an outcome must work: the exit code, the
/// one-line description, the JSON report.
fn examine(outcome: &Outcome, policy: &Policy) {
    let _ = outcome.exit_code();
    let _ = outcome.ending_line(policy);
    let json = outcome.to_json().to_string();
    assert!(
        json.contains(outcome.status.name()),
        "report without its status: {json}"
    );
    if outcome.status == Status::Trap {
        assert!(outcome.trap.is_some(), "a trap without its message");
    }
}

// ---------------------------------------------------------------------------
// Modules
// ---------------------------------------------------------------------------

/// The WASI functions a generated module may import, with their real
/// signatures (wasm-smith imports a random subset).
const WASI_IMPORTS: &str = r#"(module
    (import "wasi_snapshot_preview1" "args_get" (func (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "args_sizes_get" (func (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "environ_get" (func (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "environ_sizes_get" (func (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "clock_res_get" (func (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_close" (func (param i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_fdstat_get" (func (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_filestat_get" (func (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_prestat_get" (func (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func (param i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_read" (func (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_seek" (func (param i32 i64 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_readdir" (func (param i32 i32 i32 i64 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_create_directory" (func (param i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_unlink_file" (func (param i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_filestat_get" (func (param i32 i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "poll_oneoff" (func (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
    (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "sched_yield" (func (result i32))))"#;

/// What a command module must export.
const COMMAND_EXPORTS: &str = r#"(module
    (memory (export "memory") 1)
    (func (export "_start")))"#;

/// Limits one module case runs under: tight, so a case costs milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// `limits.fuel`.
    pub fuel: u64,
    /// `limits.memory` in bytes.
    pub memory: u64,
    /// `limits.timeout`.
    pub timeout: Duration,
    /// `limits.output` in bytes.
    pub output: u64,
    /// `[wasm] proposals`.
    pub proposals: Proposals,
}

/// `limits.fuel` of a module case: from the policy's own least, up to what
/// runs in a few milliseconds.
pub const FUEL: RangeInclusive<u64> = Limits::MIN_FUEL..=2_000_000;
/// `limits.memory` of a module case, from the policy's own least.
pub const MEMORIES: [u64; 5] = [Limits::MIN_MEMORY, 64 << 10, 1 << 20, 4 << 20, 16 << 20];
/// `limits.timeout` of a module case, in milliseconds: long enough to
/// instantiate a small module on a loaded machine, short enough to be cheap.
pub const TIMEOUT_MS: RangeInclusive<u64> = 20..=300;
/// `limits.output` of a module case, from the policy's own least.
pub const OUTPUT: RangeInclusive<u64> = Limits::MIN_OUTPUT..=64 << 10;

/// A value from `range`, taking an end one time in four each: the ends are
/// where the loader's bounds are, and an empty input gives the least of
/// every range. A selector byte of 0 takes the start, 1 the end.
fn draw(u: &mut Unstructured, range: RangeInclusive<u64>) -> AResult<u64> {
    Ok(match u.int_in_range(0u8..=3)? {
        0 => *range.start(),
        1 => *range.end(),
        _ => u.int_in_range(range)?,
    })
}

/// The inputs that make [`check_module`] draw the ends of every range: one
/// selector byte per limit (see [`draw`]), memory, fuel, timeout, output in
/// that order, followed by `rest`.
pub fn extreme_inputs(rest: &[u8]) -> Vec<Vec<u8>> {
    (0u8..16)
        .map(|corner| {
            let mut input: Vec<u8> = (0..4).map(|bit| (corner >> bit) & 1).collect();
            input.extend_from_slice(rest);
            input
        })
        .collect()
}

impl RunLimits {
    /// Limits chosen from `u`, each inside what the policy loader accepts
    /// (the ranges above start at the policy's own bounds, `Limits::MIN_*`,
    /// and stay below `Limits::MAX_*`), and the proposals a policy may turn
    /// on, one case in two none.
    pub fn arbitrary(u: &mut Unstructured) -> AResult<RunLimits> {
        let memory = draw(u, 0..=MEMORIES.len() as u64 - 1)?;
        Ok(RunLimits {
            fuel: draw(u, FUEL)?,
            memory: MEMORIES[memory as usize],
            timeout: Duration::from_millis(draw(u, TIMEOUT_MS)?),
            output: draw(u, OUTPUT)?,
            proposals: arbitrary_proposals(u)?,
        })
    }

    fn policy(&self, scratch: &Path) -> Policy {
        let toml = format!(
            "[limits]\nfuel = {}\nmemory = {}\ntimeout = \"{}ms\"\noutput = {}\nhandles = 32\n\
             [[fs.dirs]]\nhost = {:?}\nguest = \"/scratch\"\naccess = \"read-write\"\n{}",
            self.fuel,
            self.memory,
            self.timeout.as_millis(),
            self.output,
            scratch.display().to_string(),
            proposals_table(self.proposals),
        );
        Policy::from_toml(&toml, scratch).unwrap_or_else(|e| panic!("the module check's policy is invalid: {e}"))
    }
}

/// Any of the proposals a policy may turn on, one case in two none.
fn arbitrary_proposals(u: &mut Unstructured) -> AResult<Proposals> {
    if u.arbitrary()? {
        return Ok(Proposals::EMPTY);
    }
    let mut set = Proposals::EMPTY;
    for p in Proposal::ALL {
        if u.ratio(1, 3)? {
            set = set.with(p);
        }
    }
    Ok(set)
}

/// `[wasm] proposals = [...]` for `set`, or nothing for the empty set.
fn proposals_table(set: Proposals) -> String {
    if set.is_empty() {
        return String::new();
    }
    let names: Vec<String> = set.iter().map(|p| format!("{:?}", p.name())).collect();
    format!("[wasm]\nproposals = [{}]\n", names.join(", "))
}

/// One engine per configuration the module and growth cases have needed,
/// fuel metered or not: a fresh engine would compile every module from
/// scratch, and up to 2^10 proposal sets could each want one, so the cache
/// is emptied when it fills.
fn engine_for(config: EngineConfig) -> Engine {
    static ENGINES: OnceLock<Mutex<HashMap<EngineConfig, Engine>>> = OnceLock::new();
    let mut engines = ENGINES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(engine) = engines.get(&config) {
        return engine.clone();
    }
    if engines.len() >= 32 {
        engines.clear();
    }
    let engine = Engine::new(config).expect("create a fuzz engine");
    engines.insert(config, engine.clone());
    engine
}

/// A read-write directory shared by the module cases, seen as `/scratch`,
/// so that generated `path_open` calls reach real host code.
fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("create the scratch dir"))
        .path()
}

/// The wasm-smith configuration: the proposals every engine has (see
/// `wasmcell::ENABLED_PROPOSALS`) and those in `proposals`, imports only from
/// WASI, and usually the exports of a command. Returns whether the module
/// must load.
fn smith_config(u: &mut Unstructured, proposals: Proposals) -> AResult<(wasm_smith::Config, bool)> {
    let on = |p: Proposal| proposals.with_implied().contains(p);
    // `exceptions` and `gc` bring GC types, which `externref` needs.
    let gc_types = on(Proposal::Gc) || on(Proposal::Exceptions);
    let memories = if on(Proposal::MultiMemory) {
        u.int_in_range(1..=3)?
    } else {
        1
    };
    let mut c = wasm_smith::Config {
        // Enabled in wasmcell.
        bulk_memory_enabled: true,
        // Without GC types only funcref loads, and wasm-smith has no knob for
        // one without the other, so most such cases leave reference types out.
        reference_types_enabled: gc_types || u.ratio(1, 4)?,
        simd_enabled: true,
        multi_value_enabled: true,
        saturating_float_to_int_enabled: true,
        sign_extension_ops_enabled: true,
        extended_const_enabled: true,
        // Opt-in proposals, as the case's policy turns them on (wasm-smith
        // has no knob for `function-references` alone: `gc` brings it).
        relaxed_simd_enabled: on(Proposal::RelaxedSimd),
        exceptions_enabled: on(Proposal::Exceptions),
        gc_enabled: on(Proposal::Gc),
        memory64_enabled: on(Proposal::Memory64),
        tail_call_enabled: on(Proposal::TailCall),
        custom_page_sizes_enabled: on(Proposal::CustomPageSizes),
        wide_arithmetic_enabled: on(Proposal::WideArithmetic),
        // Refused by wasmcell whatever the policy says.
        custom_descriptors_enabled: false,
        threads_enabled: false,
        shared_everything_threads_enabled: false,
        // Small modules: compiling dominates a case's cost.
        max_funcs: u.int_in_range(1..=24)?,
        max_instructions: u.int_in_range(1..=400)?,
        max_types: 24,
        max_globals: 16,
        max_data_segments: 8,
        max_element_segments: 8,
        max_elements: 64,
        max_memories: memories,
        max_tables: u.int_in_range(0..=4)?,
        max_imports: 12,
        max_nesting_depth: 8,
        disallow_traps: u.ratio(1, 4)?,
        ..wasm_smith::Config::default()
    };
    c.available_imports = Some(wat::parse_str(WASI_IMPORTS).expect("valid WAT"));
    let command = u.ratio(7, 8)?;
    if command {
        c.exports = Some(wat::parse_str(COMMAND_EXPORTS).expect("valid WAT"));
        // The exports bring their own memory; more need `multi-memory`.
        c.max_memories = memories - 1;
    }
    Ok((c, command))
}

/// Generates a module from `data` with wasm-smith (or, for one case in
/// eight, takes the bytes as they are) and loads and runs it under tight
/// limits chosen from the same bytes.
///
/// # Panics
///
/// When a property in the module docs fails.
pub fn check_module(data: &[u8]) -> ModuleCase {
    let mut u = Unstructured::new(data);
    let Ok(limits) = RunLimits::arbitrary(&mut u) else {
        return ModuleCase::default();
    };
    let raw = u.ratio(1, 8).unwrap_or(false);
    if raw {
        let bytes = u.bytes(u.len()).unwrap_or_default().to_vec();
        return check_module_bytes(&bytes, limits, false);
    }
    let Ok((config, must_load)) = smith_config(&mut u, limits.proposals) else {
        return ModuleCase::default();
    };
    let Ok(module) = wasm_smith::Module::new(config, &mut u) else {
        return ModuleCase::default();
    };
    check_module_bytes(&module.to_bytes(), limits, must_load)
}

/// Loads `bytes` (any bytes: a module, a component, WAT or garbage) and runs
/// them under `limits`. With `must_load`, a `LoadError` fails the check.
///
/// # Panics
///
/// When a property in the module docs fails.
pub fn check_module_bytes(bytes: &[u8], limits: RunLimits, must_load: bool) -> ModuleCase {
    let _serial = serial();
    let policy = limits.policy(scratch_dir());
    let sandbox = Sandbox::builder()
        .engine(engine_for(EngineConfig::for_policy(&policy)))
        .policy(policy.clone())
        .build()
        .expect("the fuzz engine fits the fuzz policy");
    let mut case = ModuleCase {
        generated: true,
        ..ModuleCase::default()
    };
    let program = match sandbox.load_bytes("fuzz.wasm", bytes) {
        Ok(program) => program,
        Err(e) => {
            // externref is a GC type: without `[wasm] proposals = ["gc"]`
            // modules using it are refused (naming the proposal) although
            // reference types are enabled (funcref tables work).
            let externref = matches!(
                e.kind(),
                wasmcell::LoadErrorKind::Proposal {
                    name: wasmcell::policy::Proposal::Gc,
                    ..
                }
            );
            if std::env::var_os("WASMCELL_FUZZ_DEBUG").is_some() {
                eprintln!("refused: {e:#}");
            }
            assert!(
                !must_load || externref,
                "a generated command using only enabled proposals and WASI imports was refused: {e:#}"
            );
            assert!(!e.to_string().is_empty());
            return case;
        }
    };
    case.loaded = true;
    let rss_before = rss::current();
    let measured = rss_before.is_some() && rss::reset_peak();
    let started = Instant::now();
    let outcome = match sandbox.run_program(&program, &["arg"]) {
        Ok(outcome) => outcome,
        Err(e) => panic!("the run failed instead of ending with a status: {e:#}"),
    };
    let elapsed = started.elapsed();
    assert!(
        elapsed <= limits.timeout + HANG_MARGIN,
        "the run took {elapsed:?} under a {:?} timeout",
        limits.timeout
    );
    if measured && let (Some(before), Some(peak)) = (rss_before, rss::peak()) {
        let growth = peak.saturating_sub(before);
        let over = growth as i64 - limits.memory as i64;
        assert!(
            growth <= limits.memory + RSS_OVERHEAD,
            "host RSS grew by {} MiB during a run limited to {} MiB of memory ({:?}, peak guest memory {} bytes)",
            growth >> 20,
            limits.memory >> 20,
            outcome.status,
            outcome.peak_memory_bytes
        );
        case.rss_over_limit = Some(over);
    }
    assert!(
        outcome.peak_memory_bytes <= limits.memory,
        "the guest held {} bytes of memory under a limit of {}",
        outcome.peak_memory_bytes,
        limits.memory
    );
    if let Some(used) = outcome.fuel_used {
        assert!(used <= limits.fuel, "the guest burned {used} fuel of {}", limits.fuel);
    }
    examine(&outcome, &policy);
    case.status = Some(outcome.status);
    case
}

/// The process's resident set, from `/proc/self/status` (Linux only).
mod rss {
    fn field(name: &str) -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib << 10)
    }

    /// Bytes resident now.
    pub fn current() -> Option<u64> {
        field("VmRSS:")
    }

    /// Most bytes resident since the last [`reset_peak`].
    pub fn peak() -> Option<u64> {
        field("VmHWM:")
    }

    /// Resets the peak to the current resident set; false where the kernel
    /// does not support it.
    pub fn reset_peak() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }
}
