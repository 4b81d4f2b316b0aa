//! `[wasm] proposals` and `--wasm`: proposals stay off unless asked for, a
//! module that needs one is refused before compiling with the switch that
//! allows it, and what is turned on is turned on exactly (engines, caches,
//! limits). Fixtures are tiny WAT modules written as binaries.

use crate::{assert_status, wait_for, wasmcell_command};
use std::path::{Path, PathBuf};
use std::process::Output;
use wasmcell::policy::{Proposal, Proposals};
use wasmcell::{DiskCache, Engine, EngineConfig, LoadErrorKind, Policy, Sandbox, Status};

/// Catches what it throws, then returns: exit 0 only with exception handling.
const CATCHES: &str = r#"(module
    (tag $e (param i32))
    (func (export "_start")
        (block $caught (result i32)
            (try_table (catch $e $caught) (throw $e (i32.const 7)))
            (unreachable))
        (drop)))"#;

/// Counts down ten million tail calls: overflows any stack without them.
const TAIL_LOOP: &str = r#"(module
    (func $down (param i32)
        (if (local.get 0) (then (return_call $down (i32.sub (local.get 0) (i32.const 1))))))
    (func (export "_start") (call $down (i32.const 10000000))))"#;

fn run(args: &[&str]) -> Output {
    wait_for(wasmcell_command().args(args).spawn().expect("spawn wasmcell"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `wat` written as a binary `.wasm` in `dir`.
fn module(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    path
}

#[track_caller]
fn assert_exit(out: &Output, expected: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(expected), "stderr:\n{err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks `{needle}`:\n{err}");
    }
}

// See: #13
#[test]
fn a_module_needing_a_proposal_is_refused_with_the_switch() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            CATCHES,
            "uses Wasm exception handling; allow it with [wasm] proposals = [\"exceptions\"]; or with --wasm exceptions",
        ),
        (
            TAIL_LOOP,
            "uses Wasm tail calls; allow it with [wasm] proposals = [\"tail-call\"]; or with --wasm tail-call",
        ),
        (
            r#"(module (memory 1) (memory 1) (func (export "_start")))"#,
            "uses more than one memory; allow it with [wasm] proposals = [\"multi-memory\"]; or with --wasm multi-memory",
        ),
        // externref is a GC type: reference-types alone means funcref.
        (
            r#"(module (table 1 externref) (func (export "_start")))"#,
            "uses Wasm garbage collection (GC types such as externref, structs and arrays); allow it with [wasm] proposals = [\"gc\"]; or with --wasm gc",
        ),
    ];
    for (i, (wat, needle)) in cases.into_iter().enumerate() {
        let path = module(dir.path(), &format!("m{i}.wasm"), wat);
        let out = run(&["run", "--no-cache", path.to_str().unwrap()]);
        assert_exit(&out, 126, &["cannot load `", needle]);
        assert_eq!(stderr(&out).lines().count(), 1, "one line: {}", stderr(&out));
    }
}

// See: #13
#[test]
fn opted_in_proposals_run_from_flags_and_policy_files() {
    let dir = tempfile::tempdir().unwrap();
    let catches = module(dir.path(), "catches.wasm", CATCHES);
    let tail = module(dir.path(), "tail.wasm", TAIL_LOOP);
    let out = run(&["run", "--wasm", "exceptions", catches.to_str().unwrap()]);
    assert_exit(&out, 0, &[]);
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "[wasm]\nproposals = [\"tail-call\"]\n").unwrap();
    let out = run(&["run", "--policy", policy.to_str().unwrap(), tail.to_str().unwrap()]);
    assert_exit(&out, 0, &[]);
    // The file's proposals and the flag's add up.
    let out = run(&[
        "run",
        "--policy",
        policy.to_str().unwrap(),
        "--wasm",
        "exceptions",
        catches.to_str().unwrap(),
    ]);
    assert_exit(&out, 0, &[]);
    // An exception nobody catches ends the run as a trap.
    let throws = module(
        dir.path(),
        "throws.wasm",
        r#"(module (tag $e) (func (export "_start") (throw $e)))"#,
    );
    let out = run(&["run", "--wasm", "exceptions", throws.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

// See: #13
#[test]
fn threads_stay_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shared = module(
        dir.path(),
        "shared.wasm",
        r#"(module (memory 1 1 shared) (func (export "_start")))"#,
    );
    let out = run(&["run", "--no-cache", shared.to_str().unwrap()]);
    assert_exit(&out, 126, &["threads or shared memory, which wasmcell never turns on"]);
    let out = run(&["run", "--wasm", "threads", shared.to_str().unwrap()]);
    assert_exit(&out, 2, &["Wasm `threads` stays off"]);
    let out = run(&["run", "--wasm", "exception", shared.to_str().unwrap()]);
    assert_exit(
        &out,
        2,
        &["unknown Wasm proposal `exception`; expected one of exceptions, tail-call"],
    );
}

// See: #13
#[test]
fn check_lists_what_is_on_and_why_it_matters() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "[wasm]\nproposals = [\"exceptions\"]\n").unwrap();
    let out = run(&["check", "--wasm", "gc", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        &format!(
            "exceptions on (from {}): Wasm exception handling; risk: ",
            policy.display()
        ) as &str,
        "gc on (from --wasm): Wasm garbage collection",
        "function-references on (needed by gc): typed function references; risk: ",
        "threads and shared memory: off",
    ] {
        assert!(text.contains(needle), "check output lacks `{needle}`:\n{text}");
    }
    let plain = run(&["check", "policies/deny-all.toml"]);
    assert!(String::from_utf8_lossy(&plain.stdout).contains("exceptions, GC, tail calls and the rest are off"));
}

// See: #13
#[test]
fn engines_with_other_proposals_never_share_compiled_code() {
    let dir = tempfile::tempdir().unwrap();
    let wat = r#"(module (func (export "_start")))"#;
    let plain = EngineConfig::default();
    let tail = EngineConfig {
        proposals: Proposals::EMPTY.with(Proposal::TailCall),
        ..plain
    };
    let first = Engine::with_disk_cache(plain, DiskCache::open(dir.path()).unwrap()).unwrap();
    first.load_bytes("a.wasm", wat.as_bytes()).unwrap();
    let second = Engine::with_disk_cache(tail, DiskCache::open(dir.path()).unwrap()).unwrap();
    second.load_bytes("a.wasm", wat.as_bytes()).unwrap();
    assert_eq!(
        (second.cache_stats().compiled, second.cache_stats().disk_hits),
        (1, 0),
        "compiled again, not taken from the other engine's cache"
    );
    let again = Engine::with_disk_cache(tail, DiskCache::open(dir.path()).unwrap()).unwrap();
    again.load_bytes("a.wasm", wat.as_bytes()).unwrap();
    assert_eq!(again.cache_stats().disk_hits, 1, "the same configuration does share");
    // The shared engines are per configuration too.
    let (a, b) = (Engine::shared(plain).unwrap(), Engine::shared(tail).unwrap());
    assert_ne!(a.config(), b.config());
    assert_eq!(Engine::shared(tail).unwrap().config().proposals, tail.proposals);
}

// See: #13
#[test]
fn an_engine_must_have_exactly_the_policys_proposals() {
    let policy = Policy::builder().wasm_proposal(Proposal::Gc).build().unwrap();
    let config = EngineConfig::for_policy(&policy);
    assert_eq!(
        config.proposals.to_string(),
        "function-references, gc",
        "gc implies function-references"
    );
    let refused = |engine: EngineConfig, policy: &Policy| {
        let e = Sandbox::builder()
            .engine(Engine::new(engine).unwrap())
            .policy(policy.clone())
            .build()
            .err()
            .expect("mismatched engine refused");
        format!("{e:#}")
    };
    let lacking = refused(EngineConfig::default(), &policy);
    assert!(
        lacking.contains("wasm.proposals need the Wasm proposals function-references, gc"),
        "{lacking}"
    );
    let extra = refused(config, &Policy::deny_all());
    assert!(extra.contains("the engine turns on function-references, gc"), "{extra}");
}

// See: #13
#[test]
fn gc_heaps_count_against_limits_memory() {
    // Keeps every array reachable through a linked list: only a limit stops it.
    let bomb = r#"(module
        (type $arr (array (mut i8)))
        (type $node (struct (field (ref $arr)) (field (ref null $node))))
        (func (export "_start") (local $list (ref null $node))
            (loop $more
                (local.set $list (struct.new $node (array.new_default $arr (i32.const 65536)) (local.get $list)))
                (br $more))))"#;
    let policy = Policy::builder()
        .wasm_proposal(Proposal::Gc)
        .memory(8 << 20)
        .build()
        .unwrap();
    let sandbox = Sandbox::builder().policy(policy).capture_output(true).build().unwrap();
    let program = sandbox.load_bytes("gc_bomb.wasm", bomb.as_bytes()).unwrap();
    let outcome = sandbox.run_program(&program, &[] as &[&str]).unwrap();
    assert_status(&outcome, Status::MemoryLimit);
    assert!(outcome.peak_memory_bytes <= 8 << 20, "{}", outcome.peak_memory_bytes);
}

// See: #13
#[test]
fn externref_tables_are_bounded_like_funcref_tables() {
    let table = r#"(module (table 500000 externref) (func (export "_start")))"#;
    let policy = Policy::builder()
        .wasm_proposal(Proposal::Gc)
        .memory(1 << 20)
        .build()
        .unwrap();
    let sandbox = Sandbox::builder().policy(policy).capture_output(true).build().unwrap();
    let program = sandbox.load_bytes("table.wasm", table.as_bytes()).unwrap();
    let outcome = sandbox.run_program(&program, &[] as &[&str]).unwrap();
    assert_status(&outcome, Status::MemoryLimit);
    // Without the opt-in it does not load at all.
    let err = Sandbox::builder()
        .policy(Policy::deny_all())
        .build()
        .unwrap()
        .load_bytes("table.wasm", table.as_bytes())
        .err()
        .unwrap();
    assert!(
        matches!(err.kind(), LoadErrorKind::Proposal { name: Proposal::Gc, .. }),
        "{err}"
    );
}

/// Calls `host::call`, which no linker provides, then exits 0.
const CALLS_HOST: &str = r#"(module
    (import "host" "call" (func $call))
    (memory (export "memory") 1)
    (func (export "_start") (call $call)))"#;

/// Imports `host::call` and never calls it.
const IMPORTS_HOST: &str = r#"(module
    (import "host" "call" (func $call))
    (memory (export "memory") 1)
    (func (export "_start")))"#;

/// Every file under `dir`, however deep.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flat_map(|e| {
            let path = e.unwrap().path();
            if path.is_dir() { files_under(&path) } else { vec![path] }
        })
        .collect()
}

// See: #25
#[test]
fn an_unlinkable_module_is_refused_before_compiling_and_caches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // Over 10 MiB: a data segment, and the functions a reactor exports.
    let data = "a".repeat(10 << 20);
    let funcs: String = (0..2000)
        .map(|i| format!("(func (export \"f{i}\") (result i32) (i32.add (i32.const {i}) (call $call_result)))"))
        .collect();
    let body = format!(
        r#"(import "host" "call" (func $call)) (func $call_result (result i32) (call $call) (i32.const 1))
        (memory (export "memory") 161) (data (i32.const 0) "{data}") {funcs}"#
    );
    let command = module(
        dir.path(),
        "big.wasm",
        &format!(r#"(module {body} (func (export "_start")))"#),
    );
    let reactor = module(
        dir.path(),
        "lib.wasm",
        &format!(r#"(module {body} (func (export "_initialize")))"#),
    );
    assert!(std::fs::metadata(&command).unwrap().len() > 10 << 20);
    let cache_dir = cache.to_str().unwrap();
    let refused = "imports the function `host::call`, but wasmcell provides only WASI";
    let out = run(&["run", "--cache-dir", cache_dir, command.to_str().unwrap()]);
    assert_exit(
        &out,
        126,
        &["cannot load `", refused, "; or with --wasm unknown-imports-trap"],
    );
    let out = run(&[
        "run",
        "--cache-dir",
        cache_dir,
        "--invoke",
        "f1",
        reactor.to_str().unwrap(),
    ]);
    assert_exit(&out, 126, &[refused]);
    assert_eq!(files_under(&cache), Vec::<PathBuf>::new(), "nothing cached");
    // The same cache keeps a guest that links.
    let linkable = module(dir.path(), "ok.wasm", r#"(module (func (export "_start")))"#);
    assert_exit(
        &run(&["run", "--cache-dir", cache_dir, linkable.to_str().unwrap()]),
        0,
        &[],
    );
    assert!(!files_under(&cache).is_empty(), "a guest that links is cached");
}

// See: #25
#[test]
fn unknown_imports_trap_runs_until_the_guest_calls_one() {
    let dir = tempfile::tempdir().unwrap();
    let calls = module(dir.path(), "calls.wasm", CALLS_HOST);
    let quiet = module(dir.path(), "quiet.wasm", IMPORTS_HOST);
    let (calls, quiet) = (calls.to_str().unwrap(), quiet.to_str().unwrap());
    // Refused by default, both of them, before compiling.
    for guest in [calls, quiet] {
        let out = run(&["run", "--no-cache", guest]);
        assert_exit(&out, 126, &["imports the function `host::call`"]);
    }
    let trap = ["run", "--no-cache", "--wasm", "unknown-imports-trap"];
    assert_exit(&run(&[&trap[..], &[quiet]].concat()), 0, &[]);
    let report = dir.path().join("report.json");
    let out = run(&[&trap[..], &["--report", report.to_str().unwrap(), calls]].concat());
    assert_exit(&out, 134, &["guest trapped", "`host::call`"]);
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(
        report.contains("\"trap\"") && report.contains("`host::call`"),
        "{report}"
    );
    // The policy key does the same, and `check` says so.
    let policy = dir.path().join("trap.toml");
    std::fs::write(&policy, "[wasm]\nunknown-imports = \"trap\"\n").unwrap();
    let with_policy = |guest| run(&["run", "--no-cache", "--policy", policy.to_str().unwrap(), guest]);
    assert_exit(&with_policy(quiet), 0, &[]);
    assert_exit(&with_policy(calls), 134, &["`host::call`"]);
    let out = run(&["check", policy.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("unknown imports: trap (from "), "{text}");
    let out = run(&["check", "policies/deny-all.toml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("unknown imports: refused (default)"), "{text}");
    // A memory no linker provides stays refused: only functions trap.
    let memory = module(
        dir.path(),
        "memory.wasm",
        r#"(module (import "env" "memory" (memory 1)) (func (export "_start")))"#,
    );
    let out = run(&[&trap[..], &[memory.to_str().unwrap()]].concat());
    assert_exit(&out, 126, &["imports the memory `env::memory`", "for functions only"]);
}

/// A component linked from a PIC library that rustc and wasm-ld built with
/// extended constant expressions (as a Python component's libraries are)
/// runs under the default policy: every engine has extended-const. Before
/// #25 it was refused, naming `--wasm extended-const`.
// See: #25
#[test]
fn a_toolchain_built_extended_const_component_runs_by_default() {
    let guest = wasmcell_artifacts::WASM_EXTENDED_CONST_COMPONENT;
    let out = run(&["run", "--no-cache", "--invoke", "count(1)", guest]);
    assert_exit(&out, 0, &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "142\n");
    // Naming it still works, and changes nothing.
    let out = run(&[
        "run",
        "--no-cache",
        "--wasm",
        "extended-const",
        "--invoke",
        "count(1)",
        guest,
    ]);
    assert_exit(&out, 0, &[]);
}
