//! The embedding API at scale: compile caches, precompiled code, pooling,
//! per-run stdin, cancellation from other threads and tasks, and many runs
//! in parallel on one engine.

use crate::{assert_status, both, policy_toml, stdout};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmcell::{
    Allocator, CancelHandle, DiskCache, Engine, EngineConfig, LoadErrorKind, Policy, PoolingConfig, RunOptions,
    Sandbox, Status,
};
use wasmcell_artifacts::{
    HELLO, HELLO_COMPONENT, LIMITS_INFINITE_LOOP, LIMITS_SLEEP_FOREVER, LIMITS_SLEEP_FOREVER_COMPONENT, STDIO_ECHO,
    STDIO_ECHO_COMPONENT,
};

/// How long a cancelled guest may take to end. Cancellation is prompt (a
/// host call is abandoned at once, computation stops at the next 5 ms epoch
/// tick); the margin is for a loaded CI machine.
const PROMPT: Duration = Duration::from_secs(5);

/// A policy whose own timeout never fires during a test, so only the cancel
/// handle can end a sleeping guest.
fn patient() -> Policy {
    policy_toml("[limits]\ntimeout = \"1h\"", Path::new("."))
}

fn engine(config: EngineConfig) -> Engine {
    Engine::new(config).expect("engine builds")
}

fn sandbox(engine: &Engine, policy: Policy) -> Sandbox {
    Sandbox::builder()
        .engine(engine.clone())
        .policy(policy)
        .build()
        .expect("sandbox builds")
}

fn pooled(max_runs: u32) -> EngineConfig {
    EngineConfig {
        allocator: Allocator::Pooling(PoolingConfig::new(max_runs)),
        ..EngineConfig::default()
    }
}

const NO_ARGS: &[&str] = &[];

#[test]
fn each_guest_compiles_once_per_engine() {
    let engine = engine(EngineConfig::default());
    let bytes = std::fs::read(HELLO).unwrap();
    // Eight threads load the same bytes at once: one compiles, the others
    // wait for it and share the result.
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| engine.load_bytes("hello.wasm", &bytes).expect("hello loads"));
        }
    });
    engine.load(HELLO, u64::MAX).unwrap();
    let stats = engine.cache_stats();
    assert_eq!(stats.compiled, 1, "{stats:?}");
    assert_eq!(stats.memory_hits, 8, "{stats:?}");

    // Different bytes are a different program.
    engine.load(HELLO_COMPONENT, u64::MAX).unwrap();
    assert_eq!(engine.cache_stats().compiled, 2);

    // Another engine has its own cache.
    let other = self::engine(EngineConfig::default());
    other.load(HELLO, u64::MAX).unwrap();
    assert_eq!(other.cache_stats().compiled, 1);
}

#[test]
fn sandboxes_built_without_an_engine_share_one() {
    // A stack size no other test uses, so this test owns the shared engine.
    let policy = || policy_toml("[limits]\nstack = \"3 MiB\"", Path::new("."));
    let first = Sandbox::builder().policy(policy()).build().unwrap();
    let second = Sandbox::builder().policy(policy()).build().unwrap();
    first.load(HELLO).unwrap();
    let program = second.load(HELLO).unwrap();
    let stats = second.engine().cache_stats();
    assert_eq!((stats.compiled, stats.memory_hits), (1, 1), "{stats:?}");
    // And so a program loaded by one runs in the other.
    assert_status(&first.run_program(&program, NO_ARGS).unwrap(), Status::Exited(0));
}

#[test]
fn disk_cache_skips_compilation_in_the_next_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    for guest in both(HELLO, HELLO_COMPONENT) {
        let first = Engine::with_disk_cache(EngineConfig::default(), DiskCache::open(&dir).unwrap()).unwrap();
        first.load(guest, u64::MAX).unwrap();
        assert_eq!(first.cache_stats().compiled, 1);

        let second = Engine::with_disk_cache(EngineConfig::default(), DiskCache::open(&dir).unwrap()).unwrap();
        let program = second.load(guest, u64::MAX).unwrap();
        let stats = second.cache_stats();
        assert_eq!((stats.compiled, stats.disk_hits), (0, 1), "{stats:?}");
        let outcome = sandbox(&second, Policy::deny_all())
            .run_program(&program, NO_ARGS)
            .unwrap();
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(stdout(&outcome), "hello from wasmcell\n");

        // An engine with another configuration finds nothing to reuse.
        let metered = EngineConfig {
            fuel: true,
            ..EngineConfig::default()
        };
        let third = Engine::with_disk_cache(metered, DiskCache::open(&dir).unwrap()).unwrap();
        third.load(guest, u64::MAX).unwrap();
        assert_eq!(third.cache_stats().compiled, 1);
    }
}

// See: #13
/// A warm load of an unchanged file takes the content hash from the cache's
/// file stamp instead of reading the file; a file rewritten with other bytes
/// of the same length is read again, never served the old code.
#[cfg(unix)]
#[test]
fn warm_loads_trust_a_file_stamp_only_while_the_file_is_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let guest = tmp.path().join("exit.wat");
    let exiting = |code: u8| {
        format!(
            r#"(module
                (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                (memory (export "memory") 1)
                (func (export "_start") (call $exit (i32.const {code}))))"#
        )
    };
    let run = |expected: i32| {
        let engine = Engine::with_disk_cache(EngineConfig::default(), DiskCache::open(&dir).unwrap()).unwrap();
        let program = engine.load(&guest, u64::MAX).unwrap();
        let outcome = sandbox(&engine, Policy::deny_all())
            .run_program(&program, NO_ARGS)
            .unwrap();
        assert_status(&outcome, Status::Exited(expected));
        engine.cache_stats()
    };
    let stamps = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "stamp"))
            .count()
    };
    std::fs::write(&guest, exiting(7)).unwrap();
    assert_eq!(run(7).compiled, 1);
    assert_eq!(
        stamps(),
        0,
        "a file changed within the file clock's granularity is not stamped"
    );

    // Not synchronisation: a stamp is recorded only for a file unchanged for 2 s.
    std::thread::sleep(Duration::from_millis(2_100));
    assert_eq!(run(7).disk_hits, 1);
    assert_eq!(stamps(), 1);
    let stats = run(7);
    assert_eq!(
        (stats.compiled, stats.disk_hits),
        (0, 1),
        "answered through the stamp: {stats:?}"
    );

    // The same length, the same inode, other bytes: the stamp no longer
    // matches, so the new guest is compiled and runs.
    let file = std::fs::File::options().write(true).open(&guest).unwrap();
    std::io::Write::write_all(&mut &file, exiting(8).as_bytes()).unwrap();
    drop(file);
    assert_eq!(run(8).compiled, 1);
}

#[cfg(unix)]
#[test]
fn disk_cache_ignores_entries_others_could_have_written() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let first = Engine::with_disk_cache(EngineConfig::default(), DiskCache::open(&dir).unwrap()).unwrap();
    first.load(HELLO, u64::MAX).unwrap();
    // The compiled code; a `.stamp` beside it only names the file's hash.
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(std::fs::metadata(entry).unwrap().permissions().mode() & 0o777, 0o600);

    // Writable by others: someone could have swapped the code. It is not
    // loaded; the guest is compiled from its bytes again.
    std::fs::set_permissions(entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    let second = Engine::with_disk_cache(EngineConfig::default(), DiskCache::open(&dir).unwrap()).unwrap();
    second.load(HELLO, u64::MAX).unwrap();
    let stats = second.cache_stats();
    assert_eq!(
        (stats.compiled, stats.disk_hits, stats.disk_errors),
        (1, 0, 1),
        "{stats:?}"
    );

    // A corrupt entry is not trusted either: wasmtime rejects it and the
    // guest is compiled again, replacing it.
    std::fs::set_permissions(entry, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(entry, b"\x7fELF garbage").unwrap();
    let third = Engine::with_disk_cache(EngineConfig::default(), DiskCache::open(&dir).unwrap()).unwrap();
    let program = third.load(HELLO, u64::MAX).unwrap();
    assert_eq!(third.cache_stats().compiled, 1);
    assert_status(
        &sandbox(&third, Policy::deny_all())
            .run_program(&program, NO_ARGS)
            .unwrap(),
        Status::Exited(0),
    );
    let fourth = Engine::with_disk_cache(EngineConfig::default(), DiskCache::open(&dir).unwrap()).unwrap();
    fourth.load(HELLO, u64::MAX).unwrap();
    assert_eq!(fourth.cache_stats().disk_hits, 1, "the good entry was written back");
}

#[test]
fn precompiled_code_loads_only_through_the_unsafe_door() {
    let tmp = tempfile::tempdir().unwrap();
    for guest in both(HELLO, HELLO_COMPONENT) {
        let engine = engine(EngineConfig::default());
        let code = engine.load(guest, u64::MAX).unwrap().precompile().unwrap();
        let cwasm = tmp.path().join("hello.cwasm");
        std::fs::write(&cwasm, &code).unwrap();

        let err = engine.load(&cwasm, u64::MAX).err().expect("a .cwasm is refused");
        assert!(matches!(err.kind(), LoadErrorKind::Precompiled(_)), "{err}");
        assert!(err.to_string().contains("`Engine::load_precompiled`"), "{err}");
        let err = engine.load_bytes("hello.cwasm", &code).err().expect("as bytes too");
        assert!(matches!(err.kind(), LoadErrorKind::Precompiled(_)), "{err}");

        // SAFETY: compiled just above by this test.
        let program = unsafe { engine.load_precompiled(&cwasm) }.unwrap();
        let outcome = sandbox(&engine, Policy::deny_all())
            .run_program(&program, NO_ARGS)
            .unwrap();
        assert_eq!(stdout(&outcome), "hello from wasmcell\n");

        // Code compiled without fuel metering cannot run where fuel is metered.
        let metered = self::engine(EngineConfig {
            fuel: true,
            ..EngineConfig::default()
        });
        // SAFETY: as above.
        let err = unsafe { metered.load_precompiled(&cwasm) }
            .err()
            .expect("config mismatch");
        // The library names its own call; the CLI adds `wasmcell compile`
        // (tests/all/cli.rs).
        assert!(err.to_string().contains("`Program::precompile`"), "{err}");

        // The same door for code held in memory, as the containerd shim
        // keeps it: it runs, and the same checks refuse what does not fit.
        // SAFETY: compiled just above by this test.
        let program = unsafe { engine.load_precompiled_bytes("hello.cwasm", &code) }.unwrap();
        let outcome = sandbox(&engine, Policy::deny_all())
            .run_program(&program, NO_ARGS)
            .unwrap();
        assert_eq!(stdout(&outcome), "hello from wasmcell\n");
        // SAFETY: as above; refused before anything is mapped.
        let err = unsafe { metered.load_precompiled_bytes("hello.cwasm", &code) }
            .err()
            .expect("config mismatch");
        assert!(err.to_string().contains("`Program::precompile`"), "{err}");
        let wasm = std::fs::read(guest).unwrap();
        // SAFETY: WebAssembly, not native code: refused by its header.
        let err = unsafe { engine.load_precompiled_bytes("hello.wasm", &wasm) }
            .err()
            .expect("WebAssembly is not precompiled code");
        assert!(matches!(err.kind(), LoadErrorKind::Precompiled(_)), "{err}");
    }
}

#[test]
fn stdin_is_per_run() {
    let engine = engine(EngineConfig::default());
    for guest in both(STDIO_ECHO, STDIO_ECHO_COMPONENT) {
        let sandbox = Sandbox::builder()
            .engine(engine.clone())
            .stdin("the sandbox's stdin")
            .build()
            .unwrap();
        let program = sandbox.load(guest).unwrap();
        let outcome = sandbox.run_program(&program, NO_ARGS).unwrap();
        assert!(stdout(&outcome).contains("the sandbox's stdin"), "{}", stdout(&outcome));
        let outcome = sandbox
            .run_with(&program, NO_ARGS, RunOptions::new().stdin("this run's stdin"))
            .unwrap();
        assert!(stdout(&outcome).contains("this run's stdin"), "{}", stdout(&outcome));
        assert!(!stdout(&outcome).contains("sandbox's"));
    }
}

#[test]
fn many_threads_share_one_program_without_mixing_runs() {
    for config in [EngineConfig::default(), pooled(8)] {
        let engine = engine(config);
        let sandbox = sandbox(&engine, Policy::deny_all());
        for guest in both(STDIO_ECHO, STDIO_ECHO_COMPONENT) {
            let program = sandbox.load(guest).unwrap();
            std::thread::scope(|s| {
                for thread in 0..4 {
                    let (sandbox, program) = (&sandbox, &program);
                    s.spawn(move || {
                        for run in 0..25 {
                            let input = format!("thread {thread} run {run}\n");
                            let outcome = sandbox
                                .run_with(program, NO_ARGS, RunOptions::new().stdin(input.clone()))
                                .unwrap();
                            assert_status(&outcome, Status::Exited(0));
                            assert!(stdout(&outcome).contains(&input), "{:?} != {input:?}", stdout(&outcome));
                        }
                    });
                }
            });
        }
    }
}

#[test]
fn async_runs_interleave_on_one_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = engine(EngineConfig::default());
    let sandbox = sandbox(&engine, Policy::deny_all());
    let program = sandbox.load(STDIO_ECHO).unwrap();
    let sleeper = sandbox.load(LIMITS_SLEEP_FOREVER).unwrap();
    rt.block_on(async {
        // On a single thread, an hour-long sleeper must not hold up the
        // other runs: every run yields while it waits in a host call.
        let cancel = CancelHandle::new();
        let sleeping = {
            let (sandbox, sleeper, cancel) = (sandbox.clone(), sleeper.clone(), cancel.clone());
            tokio::spawn(async move {
                sandbox
                    .run_with_async(&sleeper, NO_ARGS, RunOptions::new().cancel(&cancel))
                    .await
            })
        };
        let runs = (0..10).map(|i| {
            let sandbox = sandbox.clone();
            let program = program.clone();
            tokio::spawn(async move {
                let input = format!("task {i}");
                let outcome = sandbox
                    .run_with_async(&program, NO_ARGS, RunOptions::new().stdin(input.clone()))
                    .await
                    .unwrap();
                assert!(stdout(&outcome).contains(&input));
            })
        });
        for run in runs.collect::<Vec<_>>() {
            run.await.unwrap();
        }
        cancel.cancel();
        let outcome = sleeping.await.unwrap().unwrap();
        assert_status(&outcome, Status::Cancelled);
    });
}

/// A guest that prints `spinning` and then computes forever without calling
/// the host again.
const SPIN_AFTER_A_LINE: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "spinning\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 9))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (loop $spin (br $spin))))
"#;

/// Runs `program` on another thread with its stdout in a file, waits until
/// the guest has printed `line` (so it is past its start, in its sleep or its
/// loop), cancels it and returns the outcome, the instant of the cancel and
/// what the guest printed.
fn cancel_after_first_line(
    engine: &Engine,
    load: impl Fn(&Sandbox) -> wasmcell::Program,
    line: &str,
) -> (wasmcell::Outcome, Instant, String) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("stdout.txt");
    let policy = policy_toml(
        "[limits]\ntimeout = \"1h\"\n\n[stdio]\nstdout = { file = \"stdout.txt\" }\n",
        tmp.path(),
    );
    let sandbox = sandbox(engine, policy);
    let program = load(&sandbox);
    let cancel = CancelHandle::new();
    let run = {
        let cancel = cancel.clone();
        std::thread::spawn(move || sandbox.run_with(&program, NO_ARGS, RunOptions::new().cancel(&cancel)))
    };
    let started = Instant::now();
    while std::fs::read_to_string(&out).unwrap_or_default() != line {
        assert!(!run.is_finished(), "the guest ended before printing {line:?}");
        assert!(started.elapsed() < crate::WATCHDOG, "the guest never printed {line:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let cancelled_at = Instant::now();
    cancel.cancel();
    let outcome = run.join().unwrap().unwrap();
    let printed = std::fs::read_to_string(&out).unwrap();
    (outcome, cancelled_at, printed)
}

#[test]
fn cancel_ends_a_guest_sleeping_in_a_host_call() {
    let engine = engine(EngineConfig::default());
    for guest in both(LIMITS_SLEEP_FOREVER, LIMITS_SLEEP_FOREVER_COMPONENT) {
        let (outcome, cancelled_at, printed) =
            cancel_after_first_line(&engine, |sandbox| sandbox.load(guest).unwrap(), "sleeping\n");
        let ended = Instant::now();
        assert_status(&outcome, Status::Cancelled);
        assert_eq!(printed, "sleeping\n", "it was in its sleep when cancelled");
        assert!(
            ended.duration_since(cancelled_at) < PROMPT,
            "took {:?}",
            ended - cancelled_at
        );
        assert_eq!(outcome.exit_code(), wasmcell::EXIT_CANCELLED);
    }
}

/// A guest computing without host calls ends at the next epoch tick. The
/// fixture is a core module (it must say when it is spinning, and a
/// component would need the whole stdout interface in WAT); components
/// share the store, its epoch deadline and the cancel race with modules, and
/// the sleeping test above cancels a component too.
#[test]
fn cancel_ends_a_guest_computing() {
    let engine = engine(EngineConfig::default());
    let load = |sandbox: &Sandbox| sandbox.load_bytes("spin.wat", SPIN_AFTER_A_LINE.as_bytes()).unwrap();
    let (outcome, cancelled_at, printed) = cancel_after_first_line(&engine, load, "spinning\n");
    assert_status(&outcome, Status::Cancelled);
    assert_eq!(printed, "spinning\n");
    assert!(cancelled_at.elapsed() < PROMPT, "took {:?}", cancelled_at.elapsed());
}

#[test]
fn one_handle_cancels_many_async_runs() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = engine(EngineConfig::default());
    let sandbox = sandbox(&engine, patient());
    let program = sandbox.load(LIMITS_SLEEP_FOREVER).unwrap();
    let cancel = CancelHandle::new();
    rt.block_on(async {
        let runs: Vec<_> = (0..200)
            .map(|_| {
                let (sandbox, program, cancel) = (sandbox.clone(), program.clone(), cancel.clone());
                tokio::spawn(async move {
                    sandbox
                        .run_with_async(&program, NO_ARGS, RunOptions::new().cancel(&cancel))
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(runs.iter().all(|r| !r.is_finished()), "all still asleep");
        // Cancelled from a task on the same runtime.
        let cancelled_at = Instant::now();
        tokio::spawn(async move { cancel.cancel() });
        for run in runs {
            let outcome = tokio::time::timeout(PROMPT, run)
                .await
                .expect("cancelled runs end promptly")
                .unwrap()
                .unwrap();
            assert_status(&outcome, Status::Cancelled);
        }
        assert!(cancelled_at.elapsed() < PROMPT);
    });
}

#[test]
fn a_run_given_a_cancelled_handle_never_starts_the_guest() {
    let engine = engine(EngineConfig::default());
    let sandbox = sandbox(&engine, Policy::deny_all());
    let program = sandbox.load(HELLO).unwrap();
    let cancel = CancelHandle::new();
    cancel.cancel();
    let outcome = sandbox
        .run_with(&program, NO_ARGS, RunOptions::new().cancel(&cancel))
        .unwrap();
    assert_status(&outcome, Status::Cancelled);
    assert!(outcome.stdout.is_empty());
    // Dropping the handle's other clones changes nothing for later runs
    // without it.
    drop(cancel);
    assert_status(&sandbox.run_program(&program, NO_ARGS).unwrap(), Status::Exited(0));
}

#[test]
fn dropping_an_async_run_stops_the_guest() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = engine(EngineConfig::default());
    let sandbox = sandbox(&engine, patient());
    let program = sandbox.load(LIMITS_INFINITE_LOOP).unwrap();
    rt.block_on(async {
        let run = sandbox.run_with_async(&program, NO_ARGS, RunOptions::new());
        // The guest yields at every epoch tick, so the timeout can fire and
        // drop it even on one thread.
        assert!(tokio::time::timeout(Duration::from_millis(200), run).await.is_err());
    });
    // The engine is fine afterwards.
    let hello = sandbox.load(HELLO).unwrap();
    assert_status(&sandbox.run_program(&hello, NO_ARGS).unwrap(), Status::Exited(0));
}

#[test]
fn a_full_pool_is_a_sandbox_error_not_a_guest_outcome() {
    let engine = engine(pooled(2));
    let sandbox = Arc::new(sandbox(&engine, patient()));
    let sleeper = sandbox.load(LIMITS_SLEEP_FOREVER).unwrap();
    let hello = sandbox.load(HELLO).unwrap();
    let cancel = CancelHandle::new();
    let spawn_sleeper = || {
        let (sandbox, sleeper, cancel) = (sandbox.clone(), sleeper.clone(), cancel.clone());
        std::thread::spawn(move || sandbox.run_with(&sleeper, NO_ARGS, RunOptions::new().cancel(&cancel)))
    };
    let mut sleepers: Vec<_> = (0..2).map(|_| spawn_sleeper()).collect();
    // Wait until both hold their slots. A probe can take a slot before a
    // sleeper does, which then finds the pool full: start it again.
    let started = Instant::now();
    let err = loop {
        for slot in &mut sleepers {
            if slot.is_finished() {
                let early = std::mem::replace(slot, spawn_sleeper()).join().unwrap();
                let Err(err) = early else {
                    panic!("a sleeper ended on its own")
                };
                assert!(err.to_string().contains("max_runs"), "{err:#}");
            }
        }
        match sandbox.run_program(&hello, NO_ARGS) {
            Err(err) => break err,
            Ok(_) if started.elapsed() < PROMPT => std::thread::sleep(Duration::from_millis(20)),
            Ok(_) => panic!("the pool never filled"),
        }
    };
    assert!(err.to_string().contains("max_runs"), "{err:#}");
    cancel.cancel();
    for sleeper in sleepers {
        assert_status(&sleeper.join().unwrap().unwrap(), Status::Cancelled);
    }
    // The slots come back.
    assert_status(&sandbox.run_program(&hello, NO_ARGS).unwrap(), Status::Exited(0));
}

#[test]
fn a_pool_refuses_policies_whose_memory_does_not_fit_its_slots() {
    let engine = engine(pooled(2));
    let big = policy_toml("[limits]\nmemory = \"1 GiB\"", Path::new("."));
    let err = Sandbox::builder()
        .engine(engine.clone())
        .policy(big)
        .build()
        .err()
        .unwrap();
    assert!(err.to_string().contains("PoolingConfig::max_memory"), "{err:#}");
}

#[test]
fn pooled_runs_keep_the_memory_limit() {
    let engine = engine(pooled(4));
    let small = policy_toml("[limits]\nmemory = \"2 MiB\"", Path::new("."));
    let sandbox = sandbox(&engine, small);
    let program = sandbox.load(wasmcell_artifacts::LIMITS_MEMORY_BOMB).unwrap();
    for _ in 0..3 {
        let outcome = sandbox.run_program(&program, NO_ARGS).unwrap();
        assert_status(&outcome, Status::MemoryLimit);
        assert!(outcome.peak_memory_bytes <= 2 << 20);
    }
}

/// Copies stdin into memory at 1024 (when there is any), then prints the 16
/// bytes there: a run that follows one fed a secret shows what it inherited.
const MEMORY_PROBE: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "_start")
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 16))
        (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

#[test]
fn a_reused_pool_slot_shows_nothing_of_the_previous_run() {
    for keep_resident in [PoolingConfig::new(1).keep_resident, 0] {
        // One slot, so every run reuses the memory the previous one wrote.
        let engine = engine(EngineConfig {
            allocator: Allocator::Pooling(PoolingConfig {
                keep_resident,
                ..PoolingConfig::new(1)
            }),
            ..EngineConfig::default()
        });
        let sandbox = sandbox(&engine, Policy::deny_all());
        let probe = sandbox.load_bytes("probe.wasm", MEMORY_PROBE.as_bytes()).unwrap();
        for _ in 0..3 {
            let secret = sandbox
                .run_with(&probe, NO_ARGS, RunOptions::new().stdin("tenant A secret!"))
                .unwrap();
            assert_eq!(secret.stdout, b"tenant A secret!", "the probe works");
            let next = sandbox.run_program(&probe, NO_ARGS).unwrap();
            assert_eq!(
                next.stdout, [0; 16],
                "keep_resident {keep_resident}: memory leaked between runs"
            );
        }
    }
}

// See: #9
#[test]
fn pooled_runs_charge_tables_against_the_memory_limit() {
    // Three tables of 2^20 elements fit the pool's slots (4 tables of 2^20
    // per module) but not a 16 MiB limit; two do.
    let table = |n: usize| {
        let tables = "(table 1048576 funcref)".repeat(n);
        format!("(module {tables} (func (export \"_start\")))")
    };
    let engine = engine(pooled(2));
    let small = policy_toml("[limits]\nmemory = \"16 MiB\"", Path::new("."));
    let sandbox = sandbox(&engine, small);
    for _ in 0..2 {
        let three = sandbox.load_bytes("three.wat", table(3).as_bytes()).unwrap();
        assert_status(&sandbox.run_program(&three, NO_ARGS).unwrap(), Status::MemoryLimit);
        let two = sandbox.load_bytes("two.wat", table(2).as_bytes()).unwrap();
        assert_status(&sandbox.run_program(&two, NO_ARGS).unwrap(), Status::Exited(0));
    }
}
