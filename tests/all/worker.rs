//! Running in a worker process (`wasmcell::worker`): the same outcome as in
//! this process, the second wall's ending told from a crash, and a child
//! that breaks the protocol or hangs turned into an error or a timeout,
//! never a panic or a hang.

use std::path::Path;
use std::time::Duration;
use wasmcell::wall::{WallError, WallErrorKind, WallReport};
use wasmcell::worker::{CompiledProgram, Job, PolicySource, Worker};
use wasmcell::{Engine, EngineConfig, Outcome, Policy, RunOptions, Sandbox, Status};
use wasmcell_artifacts::{ENV_ARGS, EXIT_PANIC, FS_READ, FS_READ_COMPONENT, HELLO, LIMITS_INFINITE_LOOP, STDIO_ECHO};

/// `module` under `policy` (TOML relative to `base`), run here and in a
/// `wasmcell worker`, from code compiled once.
fn both_ways(policy: &str, base: &Path, module: &str, args: &[&str], stdin: Option<&[u8]>) -> (Outcome, Outcome) {
    let source = PolicySource::Toml {
        text: policy.to_string(),
        base_dir: base.to_path_buf(),
    };
    let resolved = source.resolve().unwrap();
    let engine = Engine::new(EngineConfig::for_policy(&resolved)).unwrap();
    let program = engine.load(module, 64 << 20).unwrap();
    let sandbox = Sandbox::builder()
        .engine(engine.clone())
        .policy(resolved)
        .build()
        .unwrap();
    let mut options = RunOptions::new();
    let mut job = Job::new(source, CompiledProgram::new(&engine, &program).unwrap()).args(args.iter().copied());
    if let Some(stdin) = stdin {
        options = options.stdin(stdin.to_vec());
        job = job.stdin(stdin.to_vec());
    }
    let here = sandbox.run_with(&program, args, options).unwrap();
    let there = Worker::wasmcell(crate::BIN)
        .run(&job)
        .unwrap_or_else(|e| panic!("{module} in a worker: {e:#}"));
    (here, there)
}

/// The worker's outcome, less what only it can have (its wall) and what no
/// two runs share (the time taken), equals the in-process one.
#[track_caller]
fn assert_same(here: Outcome, mut there: Outcome) -> Outcome {
    assert!(there.wall.is_some(), "a worker reports its wall");
    assert_eq!(here.wall, None, "this process is not confined");
    there.wall = None;
    there.elapsed = here.elapsed;
    assert_eq!(here, there);
    here
}

#[test]
fn a_worker_run_gives_the_in_process_outcome() {
    let tmp = tempfile::tempdir().unwrap();
    let (here, there) = both_ways("", tmp.path(), HELLO, &[], None);
    let hello = assert_same(here, there);
    assert_eq!(hello.stdout, b"hello from wasmcell\n");

    let (here, there) = both_ways("", tmp.path(), EXIT_PANIC, &[], None);
    let trapped = assert_same(here, there);
    assert_eq!((trapped.status, trapped.exit_code()), (Status::Trap, 134));
    assert!(trapped.stdout.starts_with(b"about to panic"));

    let (here, there) = both_ways("[limits]\nfuel = 100000\n", tmp.path(), LIMITS_INFINITE_LOOP, &[], None);
    let burned = assert_same(here, there);
    assert_eq!(
        (burned.status, burned.fuel_used),
        (Status::FuelExhausted, Some(100_000))
    );

    std::fs::create_dir(tmp.path().join("data")).unwrap();
    std::fs::write(tmp.path().join("data/hello.txt"), b"granted\n\xff bytes").unwrap();
    let grant = "[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\n";
    for guest in [FS_READ, FS_READ_COMPONENT] {
        let (here, there) = both_ways(grant, tmp.path(), guest, &["/data/hello.txt"], None);
        let read = assert_same(here, there);
        assert_eq!(
            (read.status, &read.stdout[..]),
            (Status::Exited(0), &b"granted\n\xff bytes"[..])
        );
        let (here, there) = both_ways(grant, tmp.path(), guest, &["/data/../../etc/passwd"], None);
        let refused = assert_same(here, there);
        assert_eq!(refused.status, Status::Exited(1), "{guest}");
        assert!(!refused.denials.is_empty(), "{guest}: the escape is recorded in both");
    }
}

#[test]
fn stdin_and_args_reach_a_guest_in_a_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let (here, there) = both_ways("", tmp.path(), ENV_ARGS, &["two words", "ünï", ""], None);
    let args = assert_same(here, there);
    assert_eq!(
        String::from_utf8_lossy(&args.stdout),
        "env_args.wasm\ntwo words\nünï\n\n"
    );

    let input: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let (here, there) = both_ways("", tmp.path(), STDIO_ECHO, &[], Some(&input));
    let echoed = assert_same(here, there);
    assert_eq!(echoed.stdout, input);
}

/// A worker that does what `script` says instead of serving the protocol;
/// `$1` in the script is a file holding a well-formed wall report message,
/// `$2` one holding the error a child sends when `wall.mode = "require"`
/// cannot be met.
struct Fake {
    _dir: tempfile::TempDir,
    worker: Worker,
    report: WallReport,
}

fn fake(script: &str) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let report = WallReport::down(Default::default(), "a fake worker");
    let frame = |tag: u8, json: Vec<u8>| {
        let mut frame = vec![tag];
        frame.extend_from_slice(&(json.len() as u64).to_le_bytes());
        frame.extend_from_slice(&json);
        frame
    };
    let path = dir.path().join("report.bin");
    std::fs::write(&path, frame(b'R', serde_json::to_vec(&report).unwrap())).unwrap();
    let required = serde_json::json!({"kind": "wall-required", "report": report});
    let error = dir.path().join("error.bin");
    std::fs::write(&error, frame(b'X', serde_json::to_vec(&required).unwrap())).unwrap();
    let worker = Worker::new("/bin/sh")
        .args(["-c", script, "fake-worker"])
        .arg(&path)
        .arg(&error)
        .setup_timeout(Duration::from_millis(500))
        .grace(Duration::from_millis(100));
    Fake {
        _dir: dir,
        worker,
        report,
    }
}

/// A job for a fake worker: a tiny command under a policy with a short timeout.
fn fake_job() -> Job {
    let policy = PolicySource::Toml {
        text: "[limits]\ntimeout = \"200ms\"\n".into(),
        base_dir: ".".into(),
    };
    let engine = Engine::new(EngineConfig::for_policy(&policy.resolve().unwrap())).unwrap();
    let program = engine
        .load_bytes("empty.wasm", br#"(module (func (export "_start")))"#)
        .unwrap();
    Job::new(policy, CompiledProgram::new(&engine, &program).unwrap())
}

/// A child the kernel kills with SIGSYS is the second wall's ending, with the
/// wall the child reported, whatever else it said; not a crash.
#[test]
fn a_worker_killed_by_sigsys_is_wall_stopped() {
    for script in [
        r#"cat >/dev/null; cat "$1"; kill -SYS $$"#,
        r#"cat >/dev/null; cat "$1"; printf 'O\001\000\000\000\000\000\000\000{'; kill -SYS $$"#,
    ] {
        let fake = fake(script);
        let outcome = fake.worker.run(&fake_job()).unwrap();
        assert_eq!(outcome.status, Status::WallStopped, "{script}");
        assert_eq!(outcome.exit_code(), 159);
        assert_eq!(outcome.wall.as_ref(), Some(&fake.report));
    }
}

/// Whatever a broken or hostile child sends, the run ends with an error that
/// says what was wrong, or as a timeout; never a panic or a hang.
#[test]
fn a_worker_that_breaks_the_protocol_is_an_error() {
    let cases = [
        ("cat >/dev/null; echo garbage", "sent a message of type \"g\""),
        (
            "cat >/dev/null; exit 3",
            "closed its output without reporting its wall (exit status 3)",
        ),
        ("exit 0", "closed its output without reporting its wall (exit status 0)"),
        (
            r"cat >/dev/null; printf 'R\377\377\377\377\377\377\377\177'",
            "announced a message of 9223372036854775807 bytes, over the 1048576 allowed",
        ),
        (
            r"cat >/dev/null; printf 'R\003\000\000\000\000\000\000\000{}'",
            "ended after 2 of the 3 bytes",
        ),
        (
            r"cat >/dev/null; printf 'R\002\000\000\000\000\000\000\000{}'",
            "sent a wall report that does not parse",
        ),
        (r#"cat >/dev/null; cat "$1"; echo junk"#, "sent a message of type \"j\""),
        (
            r#"cat >/dev/null; cat "$1"; printf 'O\002\000\000\000\000\000\000\000{}'"#,
            "sent an outcome that does not parse",
        ),
        (
            r#"cat >/dev/null; cat "$1"; kill -SEGV $$"#,
            "(killed by signal 11, SIGSEGV); it may have crashed",
        ),
        (
            "echo 'worker blew up' >&2; kill -ABRT $$",
            "SIGABRT); it may have crashed; its stderr: worker blew up",
        ),
        (
            "sleep 30",
            "sent no wall report within 500ms and was killed (killed by signal 9, SIGKILL)",
        ),
    ];
    for (script, expected) in cases {
        let fake = fake(script);
        let err = fake.worker.run(&fake_job()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(expected), "{script}: {msg}");
        assert!(msg.starts_with("the worker process `/bin/sh`"), "{script}: {msg}");
    }
}

/// A child that reported its wall and then hangs is killed once the guest's
/// limits.timeout and the grace period have passed: a timeout, with its wall.
#[test]
fn a_worker_that_hangs_after_its_report_times_out() {
    let fake = fake(r#"cat >/dev/null; cat "$1"; sleep 30"#);
    let outcome = fake.worker.run(&fake_job()).unwrap();
    assert_eq!((outcome.status, outcome.exit_code()), (Status::Timeout, 124));
    assert_eq!(outcome.wall.as_ref(), Some(&fake.report));
}

/// The child sends an error it met as an error the parent returns as its
/// own: a policy that no longer resolves in the child, here.
#[test]
fn an_error_in_the_worker_comes_back_as_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("p.toml");
    std::fs::write(&path, "[limits]\ntimeout = \"1s\"\n").unwrap();
    let engine = Engine::new(EngineConfig::for_policy(&Policy::from_file(&path).unwrap())).unwrap();
    let program = engine.load(HELLO, 64 << 20).unwrap();
    let job = Job::new(
        PolicySource::File(path.clone()),
        CompiledProgram::new(&engine, &program).unwrap(),
    );
    // The parent reads the policy before starting the child, the child
    // again after: a shell rewrites the file between the two reads, then
    // becomes the real worker.
    let script = format!("printf 'timeout = 1' > '{}'; exec \"$0\" worker", path.display());
    let worker = Worker::new("/bin/sh").args(["-c", &script, crate::BIN]);
    let err = worker.run(&job).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("the worker process could not run the job"), "{msg}");
    assert!(msg.contains("timeout"), "{msg}");
}

/// A wall the child could not put up as the policy requires comes back as
/// the wall's own error, so a caller can tell it from a crash.
#[test]
fn a_required_wall_the_worker_lacks_comes_back_as_a_wall_error() {
    let fake = fake(r#"cat >/dev/null; cat "$2"; exit 2"#);
    let err = fake.worker.run(&fake_job()).unwrap_err();
    let wall = err.downcast_ref::<WallError>().expect("a WallError");
    assert!(
        matches!(wall.kind(), WallErrorKind::Required(r) if *r == fake.report),
        "{err:#}"
    );
    assert!(format!("{err:#}").starts_with("wall.mode is `require`"), "{err:#}");
}
