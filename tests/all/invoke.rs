//! Calling exports: the shape check before compiling, `Sandbox::instantiate`
//! and `Instance`, and `wasmcell run --invoke`. Guests are inline WAT
//! reactors and a WAT component (see issue #13).

use crate::{wait_for, wasmcell_command};
use std::time::Duration;
use wasmcell::{
    CancelHandle, DiskCache, Engine, EngineConfig, LoadErrorKind, Policy, RequestError, RequestErrorKind, RunOptions,
    Sandbox, Status,
};
use wasmtime::Val;

/// A reactor: `_initialize` sets the counter to 40, `bump` adds to it,
/// `add` adds, `boom` traps, `spin` loops `n` times, `forever` never ends.
const REACTOR: &str = r#"(module
    (memory (export "memory") 1)
    (global $n (mut i32) (i32.const 0))
    (func (export "_initialize") (global.set $n (i32.const 40)))
    (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
    (func (export "mix") (param i64 f64) (result i64 f64) (local.get 0) (local.get 1))
    (func (export "bump") (param i32) (result i32)
        (global.set $n (i32.add (global.get $n) (local.get 0)))
        (global.get $n))
    (func (export "boom") unreachable)
    (func (export "spin") (param i32)
        (loop $l (local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br_if $l (local.get 0))))
    (func (export "forever") (loop $l (br $l))))"#;

/// A component exporting `add(u32, u32) -> u32`, `boom()`, and `big() ->
/// list<u8>` (60,000 zeros), and no `wasi:cli/run`.
const CALC: &str = r#"(component
    (core module $m
        (memory (export "memory") 1)
        (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
        (func (export "boom") unreachable)
        (func (export "big") (result i32)
            (i32.store (i32.const 0) (i32.const 16))
            (i32.store (i32.const 4) (i32.const 60000))
            (i32.const 0)))
    (core instance $i (instantiate $m))
    (func (export "add") (param "a" u32) (param "b" u32) (result u32) (canon lift (core func $i "add")))
    (func (export "boom") (canon lift (core func $i "boom")))
    (func (export "big") (result (list u8)) (canon lift (core func $i "big") (memory (core memory $i "memory")))))"#;

fn sandbox(policy: Policy) -> Sandbox {
    Sandbox::builder().policy(policy).build().unwrap()
}

/// A reactor with `n` functions of some size: compiling it takes Cranelift
/// a noticeable while, so a check that happens after compiling shows.
fn big_reactor(n: usize) -> String {
    let mut wat = String::from("(module (func (export \"_initialize\"))\n");
    for i in 0..n {
        wat.push_str(&format!(
            "(func (export \"f{i}\") (param i32) (result i32) {})\n",
            "(local.get 0) (i32.const 7) (i32.mul) (i32.const 3) (i32.add) (drop) ".repeat(8) + "(local.get 0)"
        ));
    }
    wat + ")"
}

// See: #13
#[test]
fn reactor_refused_before_compiling() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let err = engine
        .load_bytes("ruby.wasm", big_reactor(3000).as_bytes())
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(matches!(err.kind(), LoadErrorKind::NotCommand(_)), "{text}");
    assert!(
        text.contains("a reactor exporting `_initialize`, `f0`, `f1` and 2998 more"),
        "{text}"
    );
    assert!(text.contains("`Sandbox::instantiate`"), "{text}");
    assert_eq!(engine.cache_stats().compiled, 0, "refused without compiling");

    let err = engine
        .load_bytes("calc.wasm", CALC.as_bytes())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("a component exporting `add`, `boom` and `big`"), "{err}");
    assert_eq!(engine.cache_stats().compiled, 0);
}

// See: #13, #25
/// A module whose imports cannot link is refused before it is compiled
/// (#25). A component that declares an import after its first module is
/// linked only once compiled; such a failure still compiles once, in memory
/// and on disk (#13).
#[test]
fn link_failure_still_caches_the_compiled_code() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let module = r#"(module (import "env" "nope" (func)) (func (export "_start")))"#;
    let err = engine.load_bytes("bad.wasm", module.as_bytes()).err().expect("refused");
    assert!(matches!(err.kind(), LoadErrorKind::UnknownImport { .. }), "{err}");
    assert_eq!(engine.cache_stats().compiled, 0, "refused before compiling");
    let bad = r#"(component
        (core module $m (func (export "f")))
        (import "host:call/api" (instance (export "call" (func))))
        (core instance $i (instantiate $m))
        (func (export "f") (canon lift (core func $i "f"))))"#;
    for _ in 0..3 {
        let err = engine
            .load_library_bytes("bad.wasm", bad.as_bytes())
            .err()
            .expect("refused");
        assert!(matches!(err.kind(), LoadErrorKind::Link(_)), "{err}");
        assert!(err.to_string().contains("`host:call/api`"), "{err}");
    }
    assert_eq!(engine.cache_stats().compiled, 1, "compiled once, refused three times");

    // And on disk: the next process does not compile it either.
    let dir = tempfile::tempdir().unwrap();
    let first = Engine::with_disk_cache(EngineConfig::default(), DiskCache::open(dir.path()).unwrap()).unwrap();
    assert!(first.load_library_bytes("bad.wasm", bad.as_bytes()).is_err());
    let second = Engine::with_disk_cache(EngineConfig::default(), DiskCache::open(dir.path()).unwrap()).unwrap();
    assert!(second.load_library_bytes("bad.wasm", bad.as_bytes()).is_err());
    assert_eq!(second.cache_stats().compiled, 0);
    assert_eq!(second.cache_stats().disk_hits, 1);
}

// See: #13
#[test]
fn instance_calls_exports_and_keeps_state() {
    let sandbox = sandbox(Policy::deny_all());
    let program = sandbox.load_library_bytes("reactor.wasm", REACTOR.as_bytes()).unwrap();
    assert!(program.is_library());
    let mut instance = sandbox.instantiate(&program).unwrap();
    assert_eq!(instance.started().status, Status::Exited(0));

    let add = instance.call("add", &[Val::I32(2), Val::I32(3)]).unwrap();
    assert_eq!(add.outcome.status, Status::Exited(0));
    assert_eq!(add.results.unwrap()[0].unwrap_i32(), 5);
    // `_initialize` ran first (40), and the global persists between calls.
    assert_eq!(
        instance.invoke("bump", &["1"]).unwrap().results,
        Some(vec!["41".into()])
    );
    assert_eq!(
        instance.invoke("bump", &["-2"]).unwrap().results,
        Some(vec!["39".into()])
    );
    let mix = instance.invoke("mix", &["-5", "2.5"]).unwrap();
    assert_eq!(mix.results, Some(vec!["-5".into(), "2.5".into()]));

    // Calls that cannot be made are refused without running or poisoning.
    for (call, args, want) in [
        ("nope", vec!["1"], "exports no function `nope`"),
        ("add", vec!["1"], "takes 2 arguments, not 1"),
        ("add", vec!["1", "x"], "argument 2 of `add` must be i32, not `x`"),
    ] {
        let err = instance.invoke(call, &args).unwrap_err();
        assert!(refused_call(&err) && err.to_string().contains(want), "{err}");
    }
    let err = instance.call("add", &[Val::I32(1), Val::I64(2)]).unwrap_err();
    assert!(err.to_string().contains("argument 2 of `add` must be i32"), "{err}");
    assert_eq!(
        instance.invoke("bump", &["1"]).unwrap().results,
        Some(vec!["40".into()])
    );

    // A command loaded as a library is refused by `run_program`.
    let err = sandbox.run_program(&program, &[] as &[&str]).unwrap_err();
    assert!(err.to_string().contains("loaded as a library"), "{err}");
}

// See: #13
#[test]
fn trap_poisons_the_instance() {
    let sandbox = sandbox(Policy::deny_all());
    let program = sandbox.load_library_bytes("reactor.wasm", REACTOR.as_bytes()).unwrap();
    let mut instance = sandbox.instantiate(&program).unwrap();
    let boom = instance.call("boom", &[]).unwrap();
    assert_eq!(boom.outcome.status, Status::Trap);
    assert!(boom.results.is_none());
    let err = instance.invoke("add", &["1", "2"]).unwrap_err();
    assert!(refused_call(&err), "{err}");
    assert!(
        err.to_string()
            .contains("an earlier call of `boom` did not return (guest trapped"),
        "{err}"
    );
    assert!(instance.poisoned().is_some());
}

// See: #13
#[test]
fn each_call_gets_its_own_fuel() {
    let sandbox = sandbox(Policy::builder().fuel(20_000).build().unwrap());
    let program = sandbox.load_library_bytes("reactor.wasm", REACTOR.as_bytes()).unwrap();
    let mut instance = sandbox.instantiate(&program).unwrap();
    // Each call burns well over half the budget: only a fresh budget per
    // call lets the second one finish.
    let first = instance.invoke("spin", &["3000"]).unwrap().outcome;
    let second = instance.invoke("spin", &["3000"]).unwrap().outcome;
    assert_eq!(first.status, Status::Exited(0));
    assert_eq!(second.status, Status::Exited(0), "{second:?}");
    assert!(first.fuel_used.unwrap() > 10_000, "{first:?}");
    assert_eq!(first.fuel_used, second.fuel_used);
    let out = instance.invoke("spin", &["100000"]).unwrap().outcome;
    assert_eq!(out.status, Status::FuelExhausted);
    assert_eq!(out.fuel_used, Some(20_000));
}

// See: #13
#[test]
fn each_call_gets_its_own_deadline() {
    let timeout = Duration::from_millis(500);
    let sandbox = sandbox(Policy::builder().timeout(timeout).build().unwrap());
    let program = sandbox.load_library_bytes("reactor.wasm", REACTOR.as_bytes()).unwrap();
    let mut instance = sandbox.instantiate(&program).unwrap();
    // The instance outlives one timeout: a deadline counted from
    // instantiation would have passed, one per call has not.
    std::thread::sleep(timeout * 2);
    assert_eq!(
        instance.invoke("add", &["1", "2"]).unwrap().outcome.status,
        Status::Exited(0)
    );
    // Long enough to meet epoch checks, which must see this call's deadline.
    let spin = instance.invoke("spin", &["10000000"]).unwrap().outcome;
    assert_eq!(spin.status, Status::Exited(0), "{spin:?}");
    let out = instance.invoke("forever", &[] as &[&str]).unwrap().outcome;
    assert_eq!(out.status, Status::Timeout);
    assert!(out.elapsed < Duration::from_secs(30));
    assert!(instance.invoke("add", &["1", "2"]).is_err(), "poisoned");
}

// See: #13
#[test]
fn cancel_ends_a_call() {
    let sandbox = sandbox(Policy::deny_all());
    let program = sandbox.load_library_bytes("reactor.wasm", REACTOR.as_bytes()).unwrap();
    let cancel = CancelHandle::new();
    let mut instance = sandbox
        .instantiate_with(&program, RunOptions::new().cancel(&cancel))
        .unwrap();
    assert_eq!(
        instance.invoke("add", &["1", "2"]).unwrap().outcome.status,
        Status::Exited(0)
    );
    let canceller = cancel.clone();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        canceller.cancel();
    });
    let out = instance.invoke("forever", &[] as &[&str]).unwrap().outcome;
    watchdog.join().unwrap();
    assert_eq!(out.status, Status::Cancelled);
    assert!(instance.invoke("add", &["1", "2"]).is_err(), "poisoned");
}

// See: #13
#[test]
fn component_calls_in_wave() {
    let sandbox = sandbox(Policy::deny_all());
    let program = sandbox.load_library_bytes("calc.wasm", CALC.as_bytes()).unwrap();
    assert!(program.is_component());
    let mut instance = sandbox.instantiate(&program).unwrap();
    let add = instance.invoke("add(1, 2)", &[] as &[&str]).unwrap();
    assert_eq!(add.outcome.status, Status::Exited(0));
    assert_eq!(add.results, Some(vec!["3".into()]));
    assert_eq!(add.to_json()["results"], serde_json::json!(["3"]));
    assert_eq!(add.to_json()["invoked"], "add");
    use wasmtime::component::Val as CVal;
    let typed = instance.call_component("add", &[CVal::U32(40), CVal::U32(2)]).unwrap();
    assert_eq!(typed.results, Some(vec![CVal::U32(42)]));

    for (call, want) in [
        ("add(1)", "do not fit its type"),
        ("add(1, -2)", "do not fit its type"),
        ("add(1, 2", "not a function call in WAVE syntax"),
        ("sub(1, 2)", "exports no function `sub`"),
    ] {
        let err = instance.invoke(call, &[] as &[&str]).unwrap_err();
        assert!(refused_call(&err) && err.to_string().contains(want), "{call}: {err}");
    }
    assert_eq!(
        instance.invoke("boom()", &[] as &[&str]).unwrap().outcome.status,
        Status::Trap
    );
    assert!(instance.invoke("add(1, 2)", &[] as &[&str]).is_err(), "poisoned");
}

// See: #13
#[test]
fn component_results_are_bounded_by_the_output_limit() {
    // 60,000 list elements are about 180 KB of WAVE; the host prints and
    // reports no more of it than the guest could have printed.
    let sandbox = sandbox(Policy::from_toml("[limits]\noutput = \"1 KiB\"", ".").unwrap());
    let program = sandbox.load_library_bytes("calc.wasm", CALC.as_bytes()).unwrap();
    let mut instance = sandbox.instantiate(&program).unwrap();
    let big = instance.invoke("big()", &[] as &[&str]).unwrap();
    assert_eq!(big.outcome.status, Status::Exited(0));
    let results = big.results.clone().unwrap();
    assert!(results[0].starts_with("[0, 0, "), "{}", &results[0][..20]);
    assert!(results[0].len() <= 1024 + 32, "{} bytes", results[0].len());
    assert!(results[0].ends_with(" bytes]"), "marked as cut");
    let report = big.to_json().to_string();
    assert!(
        report.len() < 4096,
        "the report carries the cut result: {} bytes",
        report.len()
    );
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

// See: #13
#[test]
fn cli_invoke() {
    let dir = tempfile::tempdir().unwrap();
    let reactor = write(dir.path(), "reactor.wat", REACTOR);
    let calc = write(dir.path(), "calc.wat", CALC);
    let report = dir.path().join("report.json");

    let out = wait_for(
        wasmcell_command()
            .args(["run", "--invoke", "add", "--report"])
            .arg(&report)
            .arg(&reactor)
            .args(["2", "-3"])
            .spawn()
            .unwrap(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"-1\n");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["invoked"], "add");
    assert_eq!(json["results"], serde_json::json!(["-1"]));

    let out = wait_for(
        wasmcell_command()
            .args(["run", "--invoke", "add(1, 2)"])
            .arg(&calc)
            .spawn()
            .unwrap(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"3\n");

    let out = wait_for(
        wasmcell_command()
            .args(["run", "--invoke", "boom"])
            .arg(&reactor)
            .spawn()
            .unwrap(),
    );
    assert_eq!(out.status.code(), Some(134));

    let out = wait_for(
        wasmcell_command()
            .args(["run", "--invoke", "add"])
            .arg(&reactor)
            .arg("1")
            .spawn()
            .unwrap(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

// See: #13
#[test]
fn cli_reactor_without_invoke_is_advised() {
    let dir = tempfile::tempdir().unwrap();
    let reactor = write(dir.path(), "reactor.wat", REACTOR);
    let out = wait_for(wasmcell_command().arg("run").arg(&reactor).spawn().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{stderr}");
    assert!(
        stderr.contains("a reactor exporting `memory`, `_initialize`, `add` and 5 more"),
        "{stderr}"
    );
    assert!(stderr.contains("add --invoke NAME"), "{stderr}");
}

// See: #13
#[test]
fn matrix_invoke_field() {
    let dir = tempfile::tempdir().unwrap();
    let reactor = write(dir.path(), "reactor.wat", REACTOR);
    let expect = write(
        dir.path(),
        "e.toml",
        "[[module]]\nname = \"reactor\"\ninvoke = \"add\"\nargs = [\"2\", \"3\"]\n\n\
         [[cell]]\nmodule = \"reactor\"\npolicy = \"*\"\nstatus = \"exited\"\nstdout-contains = \"5\\n\"\n",
    );
    let json = matrix_json(&reactor, &expect, "reactor");
    let cell = &json["cells"][0];
    assert_eq!(cell["verdict"], "match", "{cell:#}");
    let reproduce = cell["reproduce"].as_str().unwrap();
    assert!(
        reproduce.contains("--invoke add ") && reproduce.ends_with(" 2 3"),
        "{reproduce}"
    );
}

// See: #13
#[test]
fn missing_export_message_is_bounded() {
    // Export names are the guest's choice: a few of 90 KB each must not
    // make a 270 KB message.
    let long = "x".repeat(90_000);
    let wat = format!(r#"(module (func (export "a{long}")) (func (export "b{long}")) (func (export "c{long}")))"#);
    let sandbox = sandbox(Policy::deny_all());
    let program = sandbox.load_library_bytes("names.wasm", wat.as_bytes()).unwrap();
    let mut instance = sandbox.instantiate(&program).unwrap();
    let err = instance.invoke("nope", &[] as &[&str]).unwrap_err();
    let message = err.to_string();
    assert!(refused_call(&err), "{message}");
    let head: String = message.chars().take(300).collect();
    assert!(message.len() < 1_000, "{} bytes: {head}", message.len());
    assert!(message.contains("bytes]`"), "shortened names say so: {head}");
}

/// `_initialize` exports instantiation cannot call: (file name, module, what
/// the error must show).
const BAD_INITIALIZES: [(&str, &str, &str); 3] = [
    (
        "init_param.wat",
        r#"(module (func (export "_initialize") (param i32)) (func (export "f") (result i32) i32.const 1))"#,
        "(i32) -> ()",
    ),
    (
        "init_result.wat",
        r#"(module (func (export "_initialize") (result i32) i32.const 0) (func (export "f") (result i32) i32.const 1))"#,
        "() -> (i32)",
    ),
    (
        "init_global.wat",
        r#"(module (global (export "_initialize") i32 (i32.const 0)) (func (export "f") (result i32) i32.const 1))"#,
        "global",
    ),
];

// See: #20
/// A library whose `_initialize` is not `() -> ()` is a load error, like a
/// command's `_start` of the wrong type: refused before compiling, from the
/// compiled code too, and by `Sandbox::instantiate` for a module loaded as a
/// command, before its start function runs (not a trap, 134, after it).
#[test]
fn initialize_of_the_wrong_type_is_a_load_error() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let sandbox = Sandbox::builder()
        .engine(engine.clone())
        .policy(Policy::deny_all())
        .build()
        .unwrap();
    for (name, wat, found) in BAD_INITIALIZES {
        let err = sandbox
            .load_library_bytes(name, wat.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("{name}: loaded"));
        match err.kind() {
            LoadErrorKind::InitializeSignature { found: f } => assert_eq!(f, found, "{name}"),
            other => panic!("{name}: expected InitializeSignature, got {other:?}"),
        }
        assert!(err.to_string().contains("`() -> ()`"), "{name}: {err}");
    }
    assert_eq!(engine.cache_stats().compiled, 0, "refused before compiling");

    // A command with such an `_initialize` runs (nothing calls it), but is
    // not instantiated: its start function, which exits 7, never runs.
    let command = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (func $s (call $exit (i32.const 7)))
        (start $s)
        (func (export "_start"))
        (func (export "_initialize") (param i32)))"#;
    let program = sandbox.load_bytes("command.wat", command.as_bytes()).unwrap();
    let err = sandbox.instantiate(&program).err().expect("refused");
    let load = err.downcast_ref::<wasmcell::LoadError>().expect("a load error");
    assert!(
        matches!(load.kind(), LoadErrorKind::InitializeSignature { found } if found == "(i32) -> ()"),
        "{load}"
    );
    // Control: the right type instantiates, and `_initialize` runs.
    let good = sandbox.load_library_bytes("reactor.wasm", REACTOR.as_bytes()).unwrap();
    let mut instance = sandbox.instantiate(&good).unwrap();
    assert_eq!(
        instance.invoke("bump", &["1"]).unwrap().results,
        Some(vec!["41".into()])
    );
}

// See: #20
/// `wasmcell run --invoke` and the matrix report such a module as a load
/// error, 126, not a trap.
#[test]
fn cli_and_matrix_refuse_an_initialize_of_the_wrong_type_with_126() {
    let dir = tempfile::tempdir().unwrap();
    for (name, wat, found) in BAD_INITIALIZES {
        let module = write(dir.path(), name, wat);
        let out = wait_for(
            wasmcell_command()
                .args(["run", "--invoke", "f"])
                .arg(&module)
                .spawn()
                .unwrap(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(126), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("`_initialize` has type `{found}`")),
            "{name}: {stderr}"
        );

        let stem = name.trim_end_matches(".wat");
        let expect = write(
            dir.path(),
            "e.toml",
            &format!(
                "[[module]]\nname = \"{stem}\"\ninvoke = \"f\"\n\n\
                 [[cell]]\nmodule = \"{stem}\"\npolicy = \"*\"\nstatus = \"load-error\"\nexit-code = 126\n"
            ),
        );
        let json = matrix_json(&module, &expect, name);
        assert_eq!(json["cells"][0]["verdict"], "match", "{name}: {:#}", json["cells"][0]);
    }
}

/// `wasmcell matrix` of `module` under `policies/deny-all.toml` against the
/// expectations file `expect`, as JSON; the run itself must pass (`what`
/// names it on failure).
fn matrix_json(module: &std::path::Path, expect: &std::path::Path, what: &str) -> serde_json::Value {
    let deny_all = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/deny-all.toml");
    let out = wait_for(
        wasmcell_command()
            .args(["matrix", "--modules"])
            .arg(module)
            .args(["--policies", deny_all, "--expect"])
            .arg(expect)
            .args(["--format", "json"])
            .spawn()
            .unwrap(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

/// Whether `err` is a call refused before running.
fn refused_call(err: &anyhow::Error) -> bool {
    err.downcast_ref::<RequestError>().map(RequestError::kind) == Some(RequestErrorKind::Invocation)
}
