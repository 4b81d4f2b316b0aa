//! The `wasmcell` binary end to end: exit codes, the one-line explanations on
//! stderr, reports, grants from flags and policy files, argument passing and
//! `--help`/`check` output. Every test runs the real binary.

use crate::{closed_pipe, wait_for, wasmcell_command};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use wasmcell_artifacts::{
    ENV_ARGS, ENV_VARS, EXIT_CODE, EXIT_CODE_COMPONENT, EXIT_PANIC, FS_CWD, FS_OPS, FS_OPS_COMPONENT, FS_READ,
    FS_WRITE, HELLO, LIMITS_INFINITE_LOOP, LIMITS_MEMORY_BOMB, LIMITS_OUTPUT_FLOOD, LIMITS_SLEEP_FOREVER, STDIO_ECHO,
    STDIO_STDIN_BLOCKED,
};

// The repository: these tests belong to the command line's package, in cli/.
const MANIFEST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Runs `wasmcell ARGS..` with stdin closed.
fn run(args: &[&str]) -> Output {
    wait_for(wasmcell_command().args(args).spawn().expect("spawn wasmcell"))
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("wasmcell exited (not killed by a signal)")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit code and that stderr contains each of `needles`.
#[track_caller]
fn assert_exit(out: &Output, expected: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        code(out),
        expected,
        "unexpected exit code\n--- stdout ---\n{}\n--- stderr ---\n{err}",
        stdout(out)
    );
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks `{needle}`:\n{err}");
    }
}

/// wasmcell's own stderr never shows a Rust panic, whatever the input.
#[track_caller]
fn assert_no_panic(out: &Output) {
    let err = stderr(out);
    for marker in ["panicked at", "RUST_BACKTRACE"] {
        assert!(!err.contains(marker), "wasmcell panicked:\n{err}");
    }
}

fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Names of the entries in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The JSON object a `--report -` run printed at the end of stderr (only
/// allowed when the guest's stderr goes elsewhere).
fn report_from_stderr(out: &Output) -> serde_json::Value {
    let err = stderr(out);
    let start = err
        .find("\n{")
        .map(|i| i + 1)
        .or_else(|| err.starts_with('{').then_some(0))
        .unwrap_or_else(|| panic!("no JSON report on stderr:\n{err}"));
    serde_json::from_str(&err[start..]).unwrap_or_else(|e| panic!("bad report ({e}):\n{err}"))
}

// ---------------------------------------------------------------------------
// Exit codes: one test per row of the table.
// ---------------------------------------------------------------------------

#[test]
fn exit_0_hello() {
    let out = run(&["run", HELLO]);
    assert_exit(&out, 0, &[]);
    assert_eq!(stdout(&out), "hello from wasmcell\n");
    assert_eq!(stderr(&out), "", "a plain exit prints nothing of wasmcell's own");
}

#[test]
fn exit_guest_status_passes_through() {
    let out = run(&["run", EXIT_CODE, "7"]);
    assert_exit(&out, 7, &[]);
    assert_eq!(stderr(&out), "");
    // WASI 0.2 exit carries only ok/err: a component's non-zero status is 1.
    let out = run(&["run", EXIT_CODE_COMPONENT, "7"]);
    assert_exit(&out, 1, &[]);
}

#[test]
fn exit_out_of_range_status_becomes_1() {
    let out = run(&["run", EXIT_CODE, "200"]);
    assert_exit(&out, 1, &["wasmcell: guest exited with status 200", "outside 0..=125"]);
    assert_no_panic(&out);
}

#[test]
fn exit_124_timeout_while_sleeping() {
    let out = run(&["run", "--timeout", "300ms", LIMITS_SLEEP_FOREVER]);
    assert_exit(&out, 124, &["wasmcell: timed out after 300ms (--timeout)"]);
    assert_eq!(stdout(&out), "sleeping\n");
}

#[test]
fn exit_124_timeout_while_blocked_on_inherited_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "filter.toml", "[stdio]\nstdin = \"inherit\"\n");
    let mut child = wasmcell_command()
        .args(["run", "--policy", s(&policy), "--timeout", "500ms", STDIO_STDIN_BLOCKED])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn wasmcell");
    // Held open (and never written) until the child has exited, so the guest
    // blocks in its read until the deadline.
    let stdin = child.stdin.take();
    let out = wait_for(child);
    drop(stdin);
    assert_exit(&out, 124, &["timed out after 500ms (--timeout)"]);
    assert!(!stdout(&out).contains("eof after"), "{}", stdout(&out));
}

#[test]
fn exit_134_trap() {
    let out = run(&["run", EXIT_PANIC]);
    assert_exit(&out, 134, &["wasmcell: guest trapped"]);
    assert_eq!(stdout(&out), "about to panic\n");
}

#[test]
fn exit_137_memory_limit() {
    let out = run(&["run", "--memory", "16MiB", LIMITS_MEMORY_BOMB]);
    assert_exit(&out, 137, &["wasmcell: memory limit reached", "16 MiB", "(--memory)"]);
    assert_no_panic(&out);
}

#[test]
fn exit_137_declared_memory_over_limit() {
    let dir = tempfile::tempdir().unwrap();
    let wat = write(
        dir.path(),
        "big.wat",
        "(module (memory 1000) (func (export \"_start\")))",
    );
    let out = run(&["run", "--memory", "16MiB", s(&wat)]);
    assert_exit(&out, 137, &["memory limit reached"]);
    assert_no_panic(&out);
}

#[test]
fn exit_152_fuel_from_flag() {
    let out = run(&["run", "--fuel", "100000", LIMITS_INFINITE_LOOP]);
    assert_exit(
        &out,
        152,
        &["wasmcell: fuel exhausted after 100000 units (--fuel); raise it with --fuel"],
    );
}

#[test]
fn exit_152_fuel_from_policy_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "fuel.toml", "[limits]\nfuel = 100000\n");
    let out = run(&["run", "--policy", s(&policy), LIMITS_INFINITE_LOOP]);
    let origin = format!(
        "fuel exhausted after 100000 units (limits.fuel in {})",
        policy.display()
    );
    assert_exit(&out, 152, &[&origin]);
}

#[test]
fn exit_153_output_limit() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "small.toml", "[limits]\noutput = \"1 KiB\"\n");
    let out = run(&["run", "--policy", s(&policy), LIMITS_OUTPUT_FLOOD]);
    let origin = format!("(limits.output in {})", policy.display());
    assert_exit(&out, 153, &["wasmcell: output limit reached", &origin]);
    assert_eq!(out.stdout.len(), 1024, "output stops at exactly the limit");
}

#[test]
fn exit_2_usage_and_policy_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let unknown = write(d, "unknown.toml", "[limits]\nfuel = 10\nfule = 3\n");
    let contradictory = write(
        d,
        "contradictory.toml",
        "[clocks]\nmode = \"host\"\nstart = \"2000-01-01T00:00:00Z\"\n",
    );
    let missing_dir = write(
        d,
        "missing-dir.toml",
        "[[fs.dirs]]\nhost = \"not-there\"\nguest = \"/data\"\naccess = \"read-only\"\n",
    );
    let unknown_at = format!("{}:3:", unknown.display());
    let contradictory_at = format!("{}:3:", contradictory.display());
    let missing_at = format!("{}:2:", missing_dir.display());
    let missing_host = format!("{}::/x", d.join("not-there-either").display());
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["run", "--policy", s(&unknown), HELLO],
            &[&unknown_at, "unknown key `fule`"],
        ),
        (
            &["run", "--policy", s(&contradictory), HELLO],
            &[&contradictory_at, "frozen"],
        ),
        (
            &["run", "--policy", s(&missing_dir), HELLO],
            &[&missing_at, "not-there"],
        ),
        (&["run", "--memory", "12parsecs", HELLO], &["--memory", "parsecs"]),
        (&["run", "--dir", &missing_host, HELLO], &["not-there-either"]),
        (&["run"], &["MODULE"]),
        (&["frobnicate"], &["frobnicate"]),
    ];
    for (args, needles) in cases {
        let out = run(args);
        assert_exit(&out, 2, needles);
        assert_no_panic(&out);
        assert_eq!(stdout(&out), "", "{args:?}: nothing ran");
    }
}

#[test]
fn exit_126_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let random: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let random = write(d, "random.wasm", random);
    let hello = std::fs::read(HELLO).unwrap();
    let truncated = write(d, "truncated.wasm", &hello[..100]);
    let unknown_import = write(
        d,
        "import.wat",
        "(module (import \"env\" \"nope\" (func)) (func (export \"_start\")))",
    );
    let no_start = write(d, "reactor.wat", "(module (func (export \"main\")))");
    let missing = d.join("missing.wasm");
    let cases: [(Vec<&str>, &[&str]); 6] = [
        (vec!["run", s(&missing)], &["error: cannot load", "missing.wasm"]),
        (
            vec!["run", s(&random)],
            &["error: cannot load", "not a WebAssembly module"],
        ),
        (
            vec!["run", s(&truncated)],
            &["error: cannot load", "invalid WebAssembly"],
        ),
        (
            vec!["run", s(&unknown_import)],
            &["error: cannot load", "nope", "provides only WASI"],
        ),
        (vec!["run", s(&no_start)], &["error: cannot load", "_start"]),
        (
            vec!["run", "--max-module-size", "1KiB", HELLO],
            &["error: cannot load", "1 KiB", "--max-module-size"],
        ),
    ];
    for (args, needles) in cases {
        let out = run(&args);
        assert_exit(&out, 126, needles);
        assert_no_panic(&out);
        assert_eq!(stdout(&out), "", "{args:?}: nothing ran");
        // One line, each cause once, the advice at the end of it.
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}:\n{err}");
        let os_errors = usize::from(args.contains(&s(&missing)));
        assert_eq!(err.matches("os error").count(), os_errors, "{err}");
    }
}

// ---------------------------------------------------------------------------
// Reports.
// ---------------------------------------------------------------------------

#[test]
fn report_file_has_every_documented_key() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = run(&["run", "--fuel", "100000000", "--report", s(&report), HELLO]);
    assert_exit(&out, 0, &[]);
    assert_eq!(stdout(&out), "hello from wasmcell\n");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    for key in [
        "status",
        "exit_code",
        "trap",
        "fuel_used",
        "elapsed_ms",
        "peak_memory_bytes",
        "stdout_bytes",
        "stderr_bytes",
        "denials",
        "uses",
    ] {
        assert!(json.get(key).is_some(), "report lacks `{key}`: {json}");
    }
    assert_eq!(json["status"], "exited");
    assert_eq!(json["exit_code"], 0);
    assert!(json["trap"].is_null());
    let fuel = json["fuel_used"].as_u64().expect("metered run reports fuel");
    assert!(fuel > 0 && fuel < 100_000_000, "{json}");
    assert!(json["elapsed_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{json}");
    assert!(json["peak_memory_bytes"].as_u64().is_some_and(|b| b >= 65536), "{json}");
    assert_eq!(json["stdout_bytes"], "hello from wasmcell\n".len());
    assert_eq!(json["stderr_bytes"], 0);
    assert_eq!(json["denials"], serde_json::json!([]));
}

#[test]
fn report_fd_gets_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let read = || -> serde_json::Value { serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap() };
    let out = run_with_fd3("3>", &report, &["run", "--report-fd", "3", EXIT_PANIC]);
    assert_exit(&out, 134, &["guest trapped"]);
    let json = read();
    assert_eq!(json["status"], "trap");
    assert_eq!(json["exit_code"], 134);
    assert!(json["trap"].as_str().is_some_and(|t| !t.is_empty()), "{json}");
    assert!(json["fuel_used"].is_null(), "unmetered: {json}");
    assert_eq!(json["stdout_bytes"], "about to panic\n".len());
    assert!(
        json["stderr_bytes"].as_u64().is_some_and(|n| n > 0),
        "the panic message: {json}"
    );

    let out = run_with_fd3(
        "3>",
        &report,
        &["run", "--fuel", "100000", "--report-fd", "3", LIMITS_INFINITE_LOOP],
    );
    assert_exit(&out, 152, &[]);
    let json = read();
    assert_eq!(json["status"], "fuel-exhausted");
    assert_eq!(json["exit_code"], 152);
    assert_eq!(json["fuel_used"], 100_000);
}

// ---------------------------------------------------------------------------
// Grants from flags, and flags over policy files.
// ---------------------------------------------------------------------------

#[test]
fn dir_flag_grants_read_write() {
    let dir = tempfile::tempdir().unwrap();
    let grant = format!("{}::/out", dir.path().display());
    let out = run(&["run", "--dir", &grant, FS_WRITE, "/out/new.txt", "written"]);
    assert_exit(&out, 0, &[]);
    assert_eq!(stdout(&out), "wrote 7 bytes\n");
    assert_eq!(std::fs::read_to_string(dir.path().join("new.txt")).unwrap(), "written");
    assert_eq!(listing(dir.path()), ["new.txt"]);
}

#[test]
fn ro_dir_flag_denies_writes() {
    let root = tempfile::tempdir().unwrap();
    let granted = root.path().join("granted");
    std::fs::create_dir(&granted).unwrap();
    write(&granted, "existing.txt", "original");
    write(root.path(), "outside.txt", "outside");
    let grant = format!("{}::/data", granted.display());
    for target in ["/data/existing.txt", "/data/new.txt"] {
        let out = run(&["run", "--ro-dir", &grant, FS_WRITE, target, "overwritten"]);
        // The guest panics when its write fails: a trap.
        assert_exit(&out, 134, &["guest trapped"]);
        assert_eq!(
            std::fs::read_to_string(granted.join("existing.txt")).unwrap(),
            "original"
        );
        assert_eq!(listing(&granted), ["existing.txt"], "{target}: no file was created");
        assert_eq!(listing(root.path()), ["granted", "outside.txt"]);
        assert_eq!(
            std::fs::read_to_string(root.path().join("outside.txt")).unwrap(),
            "outside"
        );
    }
    // Reading is still allowed.
    let out = run(&["run", "--ro-dir", &grant, FS_READ, "/data/existing.txt"]);
    assert_exit(&out, 0, &[]);
    assert_eq!(stdout(&out), "original");
}

#[test]
fn env_flags_set_and_copy_only_what_is_named() {
    let out = wait_for(
        wasmcell_command()
            .args([
                "run",
                "--env",
                "GREETING=hi there",
                "--env",
                "WASMCELL_TEST_COPIED",
                "--env",
                "WASMCELL_TEST_UNSET",
                ENV_VARS,
            ])
            .env("WASMCELL_TEST_COPIED", "from the host")
            .env("SECRET_X", "1")
            .env_remove("WASMCELL_TEST_UNSET")
            .spawn()
            .unwrap(),
    );
    assert_exit(&out, 0, &[]);
    // Exactly the named variables: nothing else of the host's (PATH, HOME,
    // SECRET_X) leaks, and a named variable unset on the host stays unset.
    assert_eq!(stdout(&out), "GREETING=hi there\nWASMCELL_TEST_COPIED=from the host\n");
}

#[test]
fn flags_layer_over_a_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("data")).unwrap();
    std::fs::create_dir(d.join("other")).unwrap();
    write(&d.join("data"), "in-data.txt", "data file");
    let policy = write(
        d,
        "base.toml",
        "[limits]\nfuel = 1000\n\n[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\n",
    );

    // The policy's fuel is too little for hello; --fuel overrides it.
    let out = run(&["run", "--policy", s(&policy), HELLO]);
    let origin = format!("(limits.fuel in {})", policy.display());
    assert_exit(&out, 152, &[&origin]);
    let out = run(&["run", "--policy", s(&policy), "--fuel", "100000000", HELLO]);
    assert_exit(&out, 0, &[]);
    assert_eq!(stdout(&out), "hello from wasmcell\n");

    // The policy's /data stays granted next to a --dir added on top.
    let other = format!("{}::/other", d.join("other").display());
    let base = ["run", "--policy", s(&policy), "--fuel", "100000000", "--dir", &other];
    let out = run(&[&base[..], &[FS_READ, "/data/in-data.txt"]].concat());
    assert_exit(&out, 0, &[]);
    assert_eq!(stdout(&out), "data file");
    let out = run(&[&base[..], &[FS_WRITE, "/other/new.txt", "added"]].concat());
    assert_exit(&out, 0, &[]);
    assert_eq!(std::fs::read_to_string(d.join("other/new.txt")).unwrap(), "added");
    assert_eq!(listing(&d.join("data")), ["in-data.txt"]);
}

// ---------------------------------------------------------------------------
// Guest arguments.
// ---------------------------------------------------------------------------

#[test]
fn guest_args_follow_the_module() {
    // Flags after MODULE belong to the guest, even ones wasmcell knows.
    let out = run(&["run", "--fuel", "100000000", ENV_ARGS, "--fuel", "5", "-v", "plain"]);
    assert_exit(&out, 0, &[]);
    assert_eq!(stdout(&out), "env_args.wasm\n--fuel\n5\n-v\nplain\n");

    let out = run(&["run", ENV_ARGS, "--", "-x"]);
    assert_exit(&out, 0, &[]);
    assert_eq!(stdout(&out), "env_args.wasm\n-x\n", "a leading `--` is not passed on");

    let out = run(&["run", ENV_ARGS]);
    assert_eq!(stdout(&out), "env_args.wasm\n");
}

// ---------------------------------------------------------------------------
// Help and `check`.
// ---------------------------------------------------------------------------

#[test]
fn run_help_has_the_exit_code_table() {
    let out = run(&["run", "--help"]);
    assert_exit(&out, 0, &[]);
    let help = stdout(&out);
    for code in ["124", "137", "152", "153", "126", "134"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(code)),
            "no `{code}` row in:\n{help}"
        );
    }
    assert!(
        help.contains("override"),
        "help does not say flags override the policy:\n{help}"
    );
}

#[test]
fn check_describes_a_bundled_policy() {
    let policy = Path::new(MANIFEST_DIR).join("policies/read-only.toml");
    let out = run(&["check", s(&policy)]);
    assert_exit(&out, 0, &[]);
    let text = stdout(&out);
    for needle in ["/data", "read-only", "timeout", "default"] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
}

#[test]
fn check_rejects_a_bad_policy_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.toml", "# comment\n[limits]\nmemory = \"lots\"\n");
    let out = run(&["check", s(&bad)]);
    let at = format!("{}:3:", bad.display());
    assert_exit(&out, 2, &["error:", &at]);
    assert_eq!(stdout(&out), "");
    assert_no_panic(&out);

    let missing = dir.path().join("missing.toml");
    let out = run(&["check", s(&missing)]);
    assert_exit(&out, 2, &["error:", "missing.toml"]);
    assert_no_panic(&out);
}

/// The command the README shows, run from the repository root.
#[test]
fn readme_workload_reads_the_bundled_data() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let policy = Path::new(MANIFEST_DIR).join("policies/read-only.toml");
    let out = run_with_fd3(
        "3>",
        &report,
        &[
            "run",
            "--policy",
            s(&policy),
            "--report-fd",
            "3",
            FS_READ,
            "/data/hello.txt",
        ],
    );
    assert_exit(&out, 0, &[]);
    let expected = std::fs::read_to_string(Path::new(MANIFEST_DIR).join("policies/data/hello.txt")).unwrap();
    assert_eq!(stdout(&out), expected);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["status"], "exited");
    assert_eq!(json["stdout_bytes"], expected.len());
}

/// Exit 125 is the sandbox's own failure: here the policy's stdout file cannot
/// be created when the run starts (its folder does not exist).
#[test]
fn exit_125_sandbox_failure() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.toml",
        "[stdio]\nstdout = { file = \"missing-folder/out.log\" }\n",
    );
    let out = run(&["run", "--policy", s(&policy), HELLO]);
    assert_exit(
        &out,
        125,
        &["error: failed to create stdout file", "missing-folder/out.log"],
    );
    assert!(out.stdout.is_empty(), "the guest never ran");
}

/// `--stdin FILE` feeds the file to the guest and `--stdin null` closes stdin,
/// each overriding the policy's stdio.stdin; a missing file is a usage error.
#[test]
fn stdin_flag_overrides_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "from a file\n");
    let policy = write(dir.path(), "p.toml", "[stdio]\nstdin = \"inherit\"\n");
    let out = run(&["run", "--policy", s(&policy), "--stdin", s(&input), STDIO_ECHO]);
    assert_exit(&out, 0, &[]);
    assert_eq!(stdout(&out), "from a file\n");

    let mut child = wasmcell_command()
        .args(["run", "--policy", s(&policy), "--stdin", "null", STDIO_ECHO])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn wasmcell");
    let mut pipe = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut pipe, b"must not reach the guest").unwrap();
    let out = wait_for(child);
    drop(pipe);
    assert_exit(&out, 0, &[]);
    assert_eq!(stdout(&out), "", "stdin was closed for the guest");

    let missing = dir.path().join("nope.txt");
    let out = run(&["run", "--stdin", s(&missing), STDIO_ECHO]);
    assert_exit(&out, 2, &["--stdin: stdin file", "does not exist"]);
}

#[test]
fn exit_130_cancelled_by_sigint_or_sigterm() {
    for signal in ["INT", "TERM"] {
        let tmp = tempfile::tempdir().unwrap();
        let report = tmp.path().join("report.json");
        let mut child = wasmcell_command()
            .args(["run", "--timeout", "1h", "--report", s(&report), LIMITS_SLEEP_FOREVER])
            .spawn()
            .unwrap();
        // The guest prints its line just before it sleeps, after wasmcell
        // listens for signals; signal once the line is out.
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        assert_eq!(line, "sleeping\n");
        let pid = child.id().to_string();
        let kill = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(kill.success());
        let out = wait_for(child);
        assert_exit(&out, 130, &["cancelled"]);
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(report["status"], "cancelled", "{signal}");
        assert_eq!(report["exit_code"], 130);
    }
}

#[test]
fn compile_then_run_precompiled_only_when_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let cwasm = tmp.path().join("hello.cwasm");
    let out = run(&["compile", HELLO, "-o", s(&cwasm)]);
    assert_exit(&out, 0, &["--allow-precompiled"]);

    // Native code is never run by accident, even under a .wasm name.
    let renamed = write(tmp.path(), "innocent.wasm", std::fs::read(&cwasm).unwrap());
    for file in [&cwasm, &renamed] {
        let out = run(&["run", s(file)]);
        assert_exit(&out, 126, &["precompiled native code", "--allow-precompiled"]);
        assert!(stdout(&out).is_empty());
    }

    let out = run(&["run", "--allow-precompiled", s(&cwasm)]);
    assert_exit(&out, 0, &[]);
    assert_eq!(stdout(&out), "hello from wasmcell\n");

    // The flag still accepts plain WebAssembly.
    let out = run(&["run", "--allow-precompiled", HELLO]);
    assert_eq!(stdout(&out), "hello from wasmcell\n");

    // Code compiled without fuel metering cannot run under --fuel: a load
    // error saying how to fix it, not a run without metering.
    let out = run(&["run", "--fuel", "1000000", "--allow-precompiled", s(&cwasm)]);
    assert_exit(&out, 126, &["wasmcell compile"]);
    let metered = tmp.path().join("metered.cwasm");
    assert_exit(&run(&["compile", "--fuel", HELLO, "-o", s(&metered)]), 0, &[]);
    let out = run(&["run", "--fuel", "1000000", "--allow-precompiled", s(&metered)]);
    assert_exit(&out, 0, &[]);
    let out = run(&["run", "--fuel", "10", "--allow-precompiled", s(&metered)]);
    assert_exit(&out, 152, &["fuel exhausted"]);

    // The policy's module-size limit holds for precompiled code too.
    let out = run(&["run", "--allow-precompiled", "--max-module-size", "1KiB", s(&cwasm)]);
    assert_exit(&out, 126, &["--max-module-size"]);
}

// See: #20
/// Precompiled code runs only under exactly the Wasm proposals it was
/// compiled with: a run with one more (which wasmtime alone accepts, the
/// code using a subset of what the engine allows) is refused like a run with
/// one fewer, with a load error saying how to compile it again.
#[test]
fn precompiled_code_runs_only_under_the_proposals_it_was_compiled_with() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain.cwasm");
    let tail = tmp.path().join("tail.cwasm");
    assert_exit(&run(&["compile", HELLO, "-o", s(&plain)]), 0, &[]);
    assert_exit(
        &run(&["compile", "--wasm", "tail-call", HELLO, "-o", s(&tail)]),
        0,
        &["tail-call"],
    );
    for (cwasm, wasm) in [
        (&plain, &["--wasm", "tail-call"][..]),
        (&plain, &["--wasm", "tail-call", "--wasm", "exceptions"][..]),
        (&tail, &[][..]),
        (&tail, &["--wasm", "exceptions"][..]),
        (&tail, &["--wasm", "tail-call", "--wasm", "exceptions"][..]),
    ] {
        let mut args = vec!["run"];
        args.extend_from_slice(wasm);
        args.extend(["--allow-precompiled", s(cwasm)]);
        let out = run(&args);
        assert_exit(&out, 126, &["Wasm proposals", "wasmcell compile", "--wasm"]);
        assert!(stdout(&out).is_empty(), "{args:?}: nothing ran");
    }
    // Control: the same set runs.
    for (cwasm, wasm) in [(&plain, &[][..]), (&tail, &["--wasm", "tail-call"][..])] {
        let mut args = vec!["run"];
        args.extend_from_slice(wasm);
        args.extend(["--allow-precompiled", s(cwasm)]);
        let out = run(&args);
        assert_exit(&out, 0, &[]);
        assert_eq!(stdout(&out), "hello from wasmcell\n", "{args:?}");
    }
}

#[test]
fn compile_refuses_what_run_would_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&[
        "compile",
        s(&write(tmp.path(), "lib.wat", "(module)")),
        "-o",
        s(&tmp.path().join("x.cwasm")),
    ]);
    assert_exit(&out, 126, &["_start"]);
    assert!(!tmp.path().join("x.cwasm").exists());
}

#[cfg(unix)]
#[test]
fn run_caches_compiled_code_in_an_owner_only_directory() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    for _ in 0..2 {
        let out = run(&["run", "--cache-dir", s(&cache), HELLO]);
        assert_exit(&out, 0, &[]);
        assert_eq!(stdout(&out), "hello from wasmcell\n");
    }
    assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o700);
    // Beside the code, the cache may keep the guest file's stamp (`.stamp`).
    let entries: Vec<_> = listing(&cache).into_iter().filter(|e| !e.ends_with(".stamp")).collect();
    assert_eq!(
        entries.len(),
        1,
        "one entry for one guest and configuration: {entries:?}"
    );
    assert!(entries[0].ends_with(".cwasm"), "{entries:?}");

    // --no-cache writes nothing.
    let other = tmp.path().join("unused");
    let out = wasmcell_command()
        .env("WASMCELL_CACHE_DIR", &other)
        .args(["run", "--no-cache", HELLO])
        .output()
        .unwrap();
    assert_exit(&out, 0, &[]);
    assert!(!other.exists());

    // A cache directory others can write to could hold planted code: an
    // explicit one is an error, the default one a warning.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(&["run", "--cache-dir", s(&cache), HELLO]);
    assert_exit(&out, 125, &["writable by group or others", "chmod 700"]);
    assert!(stdout(&out).is_empty());
    let out = wasmcell_command()
        .env("WASMCELL_CACHE_DIR", &cache)
        .args(["run", HELLO])
        .output()
        .unwrap();
    assert_exit(&out, 0, &["warning", "running without the compile cache"]);
    assert_eq!(stdout(&out), "hello from wasmcell\n");
}

#[cfg(target_os = "linux")]
#[test]
fn exit_125_when_the_host_cannot_map_the_guests_memory() {
    // Under a 3 GB address-space limit wasmtime cannot reserve a linear
    // memory (4 GiB plus guards). That is the host failing, not the guest
    // trapping: exit 125 with advice, never 134.
    let script = format!("ulimit -v 3000000 && exec {} run --no-cache {HELLO}", crate::BIN);
    let out = wait_for(
        std::process::Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_exit(
        &out,
        125,
        &["the host could not provide the run's resources", "ulimit -v"],
    );
    assert_no_panic(&out);
}

// ---------------------------------------------------------------------------
// Reports a guest cannot forge, and output a closed pipe cannot break.
// ---------------------------------------------------------------------------

/// A core module that prints a convincing report of its own on stderr, then
/// exits 7.
const FAKE_REPORT_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\10\00\00\00\2e\00\00\00")
  (data (i32.const 16) "{\"status\": \"exited\", \"exit_code\": 0}\nwasmcell: ok\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.const 7))))"#;

/// A core module that writes 256 KiB to stdout and to stderr, ignoring any
/// error, and then traps, so that wasmcell has a line of its own to print.
const WRITE_THEN_TRAP_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\10\00\00\00\00\10\00\00")
  (func (export "_start")
    (local $i i32)
    (loop $again
      (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 64))))
    unreachable))"#;

/// Runs `wasmcell ARGS..` through `sh` with file descriptor 3 opened on
/// `fd3` by `redirect` (`3>` for writing, `3<` for reading), the way the
/// README shows `--report-fd`.
fn run_with_fd3(redirect: &str, fd3: &Path, args: &[&str]) -> Output {
    let command = wasmcell_command();
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c")
        .arg(format!(r#"exec "$@" {redirect}"$FD3""#))
        .arg("sh")
        .arg(command.get_program())
        .args(args)
        .env("FD3", fd3)
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    wait_for(sh.spawn().expect("spawn sh"))
}

/// A guest that prints a fake report on stderr and exits 7 is read as exit 7
/// by the documented way to read a report, `--report-fd`, and `--report -`
/// is refused while the guest's stderr is inherited.
// See: #9
#[test]
fn report_fd_is_not_forgeable_by_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let fake = write(dir.path(), "fake.wat", FAKE_REPORT_WAT);
    let report = dir.path().join("report.json");
    let out = run_with_fd3("3>", &report, &["run", "--report-fd", "3", s(&fake)]);
    assert_exit(&out, 7, &["\"exit_code\": 0"]);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(
        (&json["status"], &json["exit_code"], &json["guest_exit_status"]),
        (&"exited".into(), &7.into(), &7.into()),
        "{json}"
    );

    // `-` would put the report after the guest's fake: refused, nothing runs.
    let out = run(&["run", "--report", "-", s(&fake)]);
    assert_exit(&out, 2, &["`--report -`", "--report-fd N", "--report FILE"]);
    assert!(!stderr(&out).contains("exit_code"), "the guest ran");

    // ... but allowed when the guest's stderr goes elsewhere.
    let policy = write(dir.path(), "quiet.toml", "[stdio]\nstderr = \"null\"\n");
    let out = run(&["run", "--policy", s(&policy), "--report", "-", s(&fake)]);
    assert_exit(&out, 7, &[]);
    assert_eq!(report_from_stderr(&out)["exit_code"], 7);
    assert!(!stderr(&out).contains("\"exit_code\": 0"), "{}", stderr(&out));
}

/// `--report-fd` names a descriptor the caller opened for writing, never one
/// the guest shares, and a bad one is a usage error, not a panic.
// See: #9
#[test]
fn report_fd_must_be_an_open_writable_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    for (fd, why) in [
        ("0", "0, 1 and 2"),
        ("1", "0, 1 and 2"),
        ("2", "0, 1 and 2"),
        ("-4", "not negative"),
        ("97", "no such open file descriptor"),
    ] {
        let out = run(&["run", "--report-fd", fd, HELLO]);
        assert_exit(&out, 2, &[&format!("`--report-fd {fd}`"), why]);
        assert_eq!(stdout(&out), "", "nothing ran");
        assert_no_panic(&out);
    }
    let input = write(dir.path(), "in.json", "");
    let out = run_with_fd3("3<", &input, &["run", "--report-fd", "3", HELLO]);
    assert_exit(&out, 2, &["open for reading only"]);
    let out = run(&["run", "--report-fd", "3", "--report", "r.json", HELLO]);
    assert_exit(&out, 2, &["--report-fd"]);
}

/// A closed stderr or stdout ends wasmcell's output, not the run: the guest's
/// own ending decides the exit code, and the report is still written. Before
/// the fix the `guest trapped` line panicked (exit 101) and no report came.
// See: #9
#[test]
fn closed_pipes_do_not_panic_and_the_report_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let guest = write(dir.path(), "trap.wat", WRITE_THEN_TRAP_WAT);
    let report = dir.path().join("report.json");
    let args = ["run", "--verbose", "--report", s(&report), s(&guest)];
    for (name, closed_stdout, closed_stderr) in [("stderr", false, true), ("stdout", true, false), ("both", true, true)]
    {
        let _ = std::fs::remove_file(&report);
        let mut cmd = wasmcell_command();
        cmd.args(args);
        if closed_stdout {
            cmd.stdout(closed_pipe());
        }
        if closed_stderr {
            cmd.stderr(closed_pipe());
        }
        let out = wait_for(cmd.spawn().unwrap());
        assert_eq!(out.status.code(), Some(134), "closed {name}: {}", stderr(&out));
        assert_no_panic(&out);
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(json["status"], "trap", "closed {name}: {json}");
    }

    // The denial log, written from inside a host call, survives it too.
    let mut cmd = wasmcell_command();
    cmd.args(["run", "--verbose", "--report", s(&report)])
        .args([wasmcell_artifacts::NET_DNS_FLOOD_COMPONENT, "300", "10"])
        .stderr(closed_pipe());
    let out = wait_for(cmd.spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["denials"].as_array().map(Vec::len), Some(256), "{json}");
    assert_eq!(json["denials_dropped"], 300 - 256);
}

/// `check` and `matrix` into a closed stdout end quietly with their own code.
// See: #9
#[test]
fn check_and_matrix_into_a_closed_pipe_do_not_panic() {
    let policy = Path::new(MANIFEST_DIR).join("policies/read-only.toml");
    let matrix = ["matrix", "--modules", HELLO, "--policies", s(&policy)];
    for args in [&["check", s(&policy)][..], &matrix[..]] {
        let open = run(args);
        let mut cmd = wasmcell_command();
        cmd.args(args).stdout(closed_pipe());
        let out = wait_for(cmd.spawn().unwrap());
        assert_no_panic(&out);
        assert_eq!(out.status.code(), open.status.code(), "{args:?}: {}", stderr(&out));
        assert!(matches!(out.status.code(), Some(0 | 1)), "{args:?}: {}", stderr(&out));
    }
}

/// A module's own names reach wasmcell's error messages (an unknown import
/// here); they are printed escaped, so they cannot colour the terminal or
/// start a line that passes for wasmcell's.
// See: #9
#[test]
fn error_messages_escape_guest_names() {
    let dir = tempfile::tempdir().unwrap();
    let module = write(
        dir.path(),
        "evil.wat",
        r#"(module (import "env" "x\1b[31m\07\nwasmcell: forged" (func)) (func (export "_start")))"#,
    );
    let out = run(&["run", s(&module)]);
    assert_exit(&out, 126, &[r"x\u{1b}[31m\u{7}\nwasmcell: forged"]);
    assert!(
        !out.stderr.contains(&0x1b) && !out.stderr.contains(&0x07),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).lines().all(|l| !l.starts_with("wasmcell: forged")),
        "{}",
        stderr(&out)
    );
}

/// A value from a flag is refused by the same check as the same value in a
/// file, and the message names the flag the user typed.
// See: #10
#[test]
fn flags_are_checked_like_file_values() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--max-module-size", "2GiB"],
            "--max-module-size: limits.module-size must be between 1 byte and 1 GiB",
        ),
        (
            &["--max-module-size", "0"],
            "--max-module-size: limits.module-size must be between 1 byte",
        ),
        (
            &["--memory", "8GiB"],
            "--memory: limits.memory must be between 1 byte and 4 GiB",
        ),
        (&["--fuel", "0"], "--fuel: limits.fuel must be at least 1"),
    ];
    for (flags, needle) in cases {
        let out = run(&[&["run"], flags, &[HELLO]].concat());
        assert_exit(&out, 2, &[needle]);
        assert_eq!(stdout(&out), "", "{flags:?}: nothing ran");
    }
}

// ---------------------------------------------------------------------------
// The audit of capability uses.
// ---------------------------------------------------------------------------

/// `--audit FILE` on both targets: one JSON line per file operation, allowed
/// and denied, with the guest path and the rule; the report counts the same
/// uses per kind.
#[test]
fn audit_lists_every_file_operation_and_the_report_counts_them() {
    for guest in [FS_OPS, FS_OPS_COMPONENT] {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w");
        std::fs::create_dir(&w).unwrap();
        std::fs::write(w.join(".env"), "KEY=1").unwrap();
        std::fs::write(w.join("a.txt"), "a").unwrap();
        let policy = dir.path().join("p.toml");
        std::fs::write(
            &policy,
            "[[fs.dirs]]\nhost = \"w\"\nguest = \"/w\"\naccess = \"read-write\"\ndeny = [\".env\"]\n",
        )
        .unwrap();
        let (audit, report) = (dir.path().join("audit.jsonl"), dir.path().join("report.json"));
        let out = run(&[
            "run",
            "--policy",
            s(&policy),
            "--audit",
            s(&audit),
            "--report",
            s(&report),
            guest,
            "read:/w/a.txt",
            "read:/w/.env",
            "write:/w/b.txt:b",
            "rm:/w/a.txt",
        ]);
        assert_exit(&out, 0, &[]);
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
            .unwrap()
            .lines()
            // The first line names the module (`module::the_audit_opens_with_the_module_and_its_digest`).
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let seen: Vec<(String, String, String)> = lines
            .iter()
            .map(|l| {
                assert!(l["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
                assert!(l["rule"].as_str().is_some_and(|r| !r.is_empty()), "{l}");
                let field = |k: &str| l[k].as_str().unwrap().to_string();
                (field("kind"), field("target"), field("decision"))
            })
            .collect();
        let want = |k: &str, t: &str, d: &str| (k.to_string(), t.to_string(), d.to_string());
        for expected in [
            want("fs-read", "/w/a.txt", "allowed"),
            want("fs-read", "/w/.env", "denied"),
            want("fs-create", "/w/b.txt", "allowed"),
            want("fs-remove", "/w/a.txt", "allowed"),
        ] {
            assert!(seen.contains(&expected), "{guest}: {expected:?} not in {seen:#?}");
        }
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let uses = &report["uses"];
        let counted: u64 = uses
            .as_object()
            .unwrap()
            .values()
            .map(|c| c["allowed"].as_u64().unwrap() + c["denied"].as_u64().unwrap())
            .sum();
        assert_eq!(counted, lines.len() as u64, "{guest}: {uses} vs {seen:#?}");
        assert_eq!(uses["fs-read"]["denied"], 1, "{guest}: {uses}");
    }
}

/// A guest decides how many uses it makes: the audit stops at --audit-limit
/// with one closing line, and the report still counts every use.
#[test]
fn audit_is_bounded_and_says_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("w")).unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        "[[fs.dirs]]\nhost = \"w\"\nguest = \"/w\"\naccess = \"read-only\"\n",
    )
    .unwrap();
    let audit = dir.path().join("audit.jsonl");
    let long = format!("stat:/w/{}", "x".repeat(200));
    let ops: Vec<&str> = std::iter::repeat_n(long.as_str(), 200).collect();
    let mut args = vec![
        "run",
        "--policy",
        s(&policy),
        "--audit",
        s(&audit),
        "--audit-limit",
        "4KiB",
        "--report",
        "-",
    ];
    args.push(FS_OPS);
    args.extend(ops);
    // `--report -` needs the guest's stderr elsewhere; this guest writes none,
    // so send it to a file through a second policy layer.
    let policy_text = std::fs::read_to_string(&policy).unwrap() + "[stdio]\nstderr = \"null\"\n";
    std::fs::write(&policy, policy_text).unwrap();
    let out = run(&args);
    assert_exit(&out, 0, &[]);
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(text.len() <= 4096, "{} bytes", text.len());
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["truncated"], true, "{last}");
    let report = report_from_stderr(&out);
    assert_eq!(report["uses"]["fs-read"]["allowed"], 200, "{report}");
}

/// The audit file is created without following a link planted at its path.
#[test]
fn audit_does_not_follow_a_planted_link() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let audit = dir.path().join("audit.jsonl");
    std::os::unix::fs::symlink(&victim, &audit).unwrap();
    let out = run(&["run", "--audit", s(&audit), HELLO]);
    assert_exit(&out, 2, &["audit"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
}

/// The audit may not sit where the guest can write while it is written.
#[test]
fn audit_refuses_a_file_inside_a_read_write_grant() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let out = run(&[
        "run",
        "--dir",
        &format!("{}::/w", s(dir.path())),
        "--audit",
        s(&audit),
        HELLO,
    ]);
    assert_exit(&out, 2, &["--audit", "inside the read-write grant at `/w`"]);
    assert!(!audit.exists());
}

/// `--cwd` sets `fs.cwd` over the policy file, and `check` shows it; a working directory outside
/// every grant is refused before anything runs (exit 2), named by the flag, or by the file and
/// line that set it.
#[test]
fn cwd_flag_sets_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write(&dir.path().join("sub"), "hello.txt", "hi\n");
    let grant = format!("{}::/data", s(dir.path()));
    let out = run(&["run", "--ro-dir", &grant, "--cwd", "/data/sub", FS_CWD]);
    assert_exit(&out, 0, &[]);
    assert!(
        stdout(&out).ends_with("PWD: /data/sub\ncwd: /data/sub\nhello.txt: hi\n"),
        "{}",
        stdout(&out)
    );
    let out = run(&["run", "--ro-dir", &grant, "--cwd", "/elsewhere", FS_CWD]);
    assert_exit(
        &out,
        2,
        &["--cwd: fs.cwd `/elsewhere` is not inside a granted directory (`/data`)"],
    );
    assert_eq!(stdout(&out), "", "nothing ran");
    let outside = write(dir.path(), "outside.toml", "[fs]\ncwd = \"/nowhere\"\n");
    let out = run(&["check", s(&outside)]);
    let at = format!("{}:2: fs.cwd `/nowhere` is not inside a granted directory", s(&outside));
    assert_exit(&out, 2, &[&at]);
    let policy = write(
        dir.path(),
        "cwd.toml",
        "[fs]\ncwd = \"/data/sub\"\n[[fs.dirs]]\nhost = \".\"\nguest = \"/data\"\naccess = \"read-only\"\n",
    );
    let out = run(&["check", s(&policy)]);
    assert_exit(&out, 0, &[]);
    assert!(
        stdout(&out).contains("working directory: /data/sub"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("PWD=/data/sub"), "{}", stdout(&out));
}

/// Every usage error the command line can produce (clap's parsing of each
/// subcommand, each value parser, conflict and requirement, and the checks
/// made after parsing in `run.rs`), each with the exact first line it prints:
/// one `error:` prefix, never two, and exit 2.
// See: #25
#[test]
fn every_usage_error_has_one_prefix_and_an_exact_first_line() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir().unwrap();
    let guest = dir.path().join("noop.wat");
    std::fs::write(&guest, r#"(module (func (export "_start")))"#).unwrap();
    let rw = dir.path().join("rw");
    std::fs::create_dir(&rw).unwrap();
    let audit = rw.join("a.jsonl");
    let m = guest.to_str().unwrap();
    let bad_proposal = "error: invalid value 'bogus' for '--wasm <NAME>': unknown Wasm proposal `bogus`; expected one of exceptions, tail-call, extended-const, function-references, gc, multi-memory, memory64, relaxed-simd, custom-page-sizes, wide-arithmetic; or unknown-imports-trap";
    let required = "error: the following required arguments were not provided:";
    let bad_size = |flag: &str, value: &str| {
        format!(
            "error: invalid value '{value}' for '{flag} <SIZE>': invalid size `{value}`: expected a whole number and a unit such as `256 MiB`"
        )
    };
    let bad_grant = |flag: &str, shape: &str| {
        format!("error: invalid value '::/x' for '{flag} <{shape}>': expected HOST or HOST::GUEST, got `::/x`")
    };
    let grant = format!("{}::/w", rw.display());
    let audit_inside = format!(
        "error: --audit `{}` is inside the read-write grant at `/w` (host `{}`), where the guest could change it; write the audit elsewhere",
        std::fs::canonicalize(&rw).unwrap().join("a.jsonl").display(),
        std::fs::canonicalize(&rw).unwrap().display()
    );
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec![], "Run untrusted WebAssembly under a deny-by-default capability policy".into()),
        (vec!["bogus"], "error: unrecognized subcommand 'bogus'".into()),
        (vec!["check", "--bogus", "x.toml"], "error: unexpected argument '--bogus' found".into()),
        (vec!["run"], required.into()),
        (vec!["check"], required.into()),
        (vec!["compile"], required.into()),
        (vec!["matrix"], required.into()),
        (vec!["matrix", "--modules", "x"], required.into()),
        (vec!["run", "--dir", "::/x", m], bad_grant("--dir", "HOST[::GUEST]")),
        (vec!["run", "--ro-dir", "::/x", m], bad_grant("--ro-dir", "HOST[::GUEST]")),
        (vec!["run", "--file", "::/x", m], bad_grant("--file", "HOST::GUEST")),
        (vec!["run", "--ro-file", "::/x", m], bad_grant("--ro-file", "HOST::GUEST")),
        (vec!["run", "--env", "=x", m], "error: invalid value '=x' for '--env <NAME[=VALUE]>': expected NAME or NAME=VALUE, got `=x`".into()),
        (vec!["run", "--stdin", "", m], "error: invalid value '' for '--stdin <null|inherit|FILE>': expected `null`, `inherit` or a file".into()),
        (vec!["run", "--wall", "maybe", m], "error: invalid value 'maybe' for '--wall <MODE>': unknown wall mode `maybe`; use `require`, `auto` or `off`".into()),
        (vec!["run", "--audit", "/tmp/a", "--audit-limit", "lots", m], bad_size("--audit-limit", "lots")),
        (vec!["run", "--wasm", "bogus", m], bad_proposal.into()),
        (vec!["check", "--wasm", "bogus", "x.toml"], bad_proposal.into()),
        (vec!["compile", "--wasm", "bogus", m], bad_proposal.into()),
        (vec!["run", "--fuel", "lots", m], "error: invalid value 'lots' for '--fuel <N>': invalid digit found in string".into()),
        (vec!["run", "--memory", "lots", m], bad_size("--memory", "lots")),
        (vec!["run", "--max-module-size", "huge", m], bad_size("--max-module-size", "huge")),
        (vec!["run", "--timeout", "forever", m], "error: invalid value 'forever' for '--timeout <DURATION>': invalid duration `forever`: expected number at 0; write it like `10s`, `500ms` or `2m`".into()),
        (vec!["run", "--report-fd", "x", m], "error: invalid value 'x' for '--report-fd <N>': invalid digit found in string".into()),
        (vec!["run", "--report", "a", "--report-fd", "3", m], "error: the argument '--report <FILE|->' cannot be used with '--report-fd <N>'".into()),
        (vec!["run", "--cache-dir", "c", "--no-cache", m], "error: the argument '--cache-dir <DIR>' cannot be used with '--no-cache'".into()),
        (vec!["run", "--audit-limit", "1MiB", m], required.into()),
        (vec!["matrix", "--modules", "x", "--policies", "y", "--format", "xml"], "error: invalid value 'xml' for '--format <FORMAT>'".into()),
        (vec!["matrix", "--modules", "x", "--policies", "y", "--jobs", "many"], "error: invalid value 'many' for '--jobs <N>': invalid digit found in string".into()),
        // Found after parsing (run.rs), printed with the same one prefix.
        (vec!["run", "--report", "-", m], "error: `--report -` would write the report on the guest's own stderr, where the guest can print a fake one; use `--report FILE` or `--report-fd N` (such as `--report-fd 3 3>report.json`), or send the guest's stderr elsewhere with `stdio.stderr` in the policy".into()),
        (vec!["run", "--report-fd", "1", m], "error: `--report-fd 1`: 0, 1 and 2 are the guest's stdin, stdout and stderr; open one for the report, such as `--report-fd 3 3>report.json`".into()),
        (vec!["run", "--report-fd", "9", m], "error: `--report-fd 9`: no such open file descriptor; open one for the report, such as `--report-fd 3 3>report.json`".into()),
        (vec!["run", "--dir", &grant, "--audit", audit.to_str().unwrap(), m], audit_inside),
    ];
    for (args, first) in &cases {
        let out = run(args);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{args:?}: {err}");
        assert_eq!(err.lines().next().unwrap_or(""), first, "{args:?}");
        assert!(!err.contains("error: error:"), "{args:?}: {err}");
    }
    // A guest argument that is not UTF-8.
    let not_utf8 = std::ffi::OsStr::from_bytes(b"\xff");
    let out = wait_for(
        wasmcell_command()
            .args(["run".as_ref(), guest.as_os_str(), not_utf8])
            .spawn()
            .unwrap(),
    );
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out).lines().next().unwrap(),
        r#"error: guest argument "\xFF" is not valid UTF-8; WASI passes arguments as UTF-8 strings"#
    );
}
