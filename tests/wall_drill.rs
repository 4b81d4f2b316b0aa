//! The escape drill: the real `wasmcell` binary, built with the test-only
//! `wall-drill` feature, runs the `drill_attempt` guest, which asks the *host
//! process* (on a thread started after the wall went up) to do what a
//! subverted runtime would. Under the second wall every attempt must fail,
//! refused with an errno or the process killed with the wall's ending
//! (exit 159); with `wall.mode = "off"` every attempt must succeed, which
//! proves the drill can fail at all. Grants the policy makes (a loopback
//! port, a read-only or read-write folder) stay usable under the wall, and
//! only as granted.
//!
//! Run with `cargo test --features wall-drill --test wall_drill`. The tests
//! run as root, as CI and the containerd shim do: the wall must hold for root.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wasmcell_artifacts::{DRILL_ATTEMPT, DRILL_ATTEMPT_COMPONENT};

macro_rules! assert_test_exists {
    ($name:ident) => {
        #[expect(unused_imports, reason = "only checks that the test exists")]
        use self::$name as _;
    };
}
wasmcell_artifacts::foreach_drill!(assert_test_exists);

/// Longest one run may take before the test kills it and fails.
const WATCHDOG: Duration = Duration::from_secs(60);

/// `ptrace-parent` stops this test process while it attaches; two at once
/// would find it already traced, so those runs take turns.
static PTRACE: Mutex<()> = Mutex::new(());

/// What one attempt must show.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// It succeeded: `drill WHAT: ok`, `drill done`, exit 0.
    Ok,
    /// The kernel refused it with this errno and the run went on: `EACCES`
    /// from Landlock (files, ports), `EPERM` from seccomp (a socket the
    /// policy has no use for).
    Refused(i32),
    /// The wall killed the process (seccomp, for a call only a subverted
    /// runtime makes): exit 159 (`wasmcell::EXIT_WALL`), status `wall-stopped`.
    Killed,
    /// `exec` succeeded: the process became `sh -c true`, which exits 0
    /// without the guest's lines.
    Became,
}

use Expect::{Killed, Refused};
use libc::{EACCES, EPERM};

/// One attempt and what it must show under the wall; with the wall off it
/// must succeed.
struct Row {
    what: &'static str,
    arg: String,
    wall: Expect,
}

fn row(what: &'static str, arg: impl Into<String>, wall: Expect) -> Row {
    Row {
        what,
        arg: arg.into(),
        wall,
    }
}

/// Every attempt, with no grant at all: each one is an escape.
fn every_attempt(scratch: &Scratch) -> Vec<Row> {
    vec![
        row("read-file", s(&scratch.outside_file), Refused(EACCES)),
        row("write-file", s(&scratch.outside.join("written.txt")), Refused(EACCES)),
        row("list-root", "", Refused(EACCES)),
        row("exec", "", Killed),
        row("fork", "", Killed),
        row("connect", scratch.tcp_port().to_string(), Refused(EPERM)),
        row("udp-send", scratch.udp_port().to_string(), Refused(EPERM)),
        row("unix-socket", "", Refused(EPERM)),
        row("netlink-socket", "", Killed),
        row("packet-socket", "", Killed),
        // With the wall up, the parent is wasmcell's own watcher, which stays
        // outside the wall: reaching it would be an escape.
        row("ptrace-parent", "", Killed),
        row("signal-parent", "", Killed),
        row("mount", s(&scratch.mount_point), Killed),
        row("bpf", "", Killed),
        row("io-uring", "", Killed),
    ]
}

/// Host files and loopback sockets the attempts aim at.
struct Scratch {
    _tmp: tempfile::TempDir,
    /// A folder no run is granted, with `secret.txt` in it.
    outside: PathBuf,
    outside_file: PathBuf,
    /// A folder granted read-only, with `ro.txt` in it.
    ro: PathBuf,
    /// A folder granted read-write, with `rw.txt` in it.
    rw: PathBuf,
    /// An empty folder to mount on.
    mount_point: PathBuf,
    tcp: TcpListener,
    udp: UdpSocket,
}

impl Scratch {
    fn new() -> Scratch {
        let tmp = tempfile::tempdir().unwrap();
        // Canonical, as the wall's rules are: the drill opens host paths.
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let [outside, ro, rw, mount_point] = ["outside", "ro", "rw", "mnt"].map(|name| root.join(name));
        for dir in [&outside, &ro, &rw, &mount_point] {
            std::fs::create_dir(dir).unwrap();
        }
        let outside_file = outside.join("secret.txt");
        std::fs::write(&outside_file, "host secret\n").unwrap();
        std::fs::write(ro.join("ro.txt"), "read-only grant\n").unwrap();
        std::fs::write(rw.join("rw.txt"), "read-write grant\n").unwrap();
        Scratch {
            _tmp: tmp,
            outside,
            outside_file,
            ro,
            rw,
            mount_point,
            tcp: TcpListener::bind("127.0.0.1:0").unwrap(),
            udp: UdpSocket::bind("127.0.0.1:0").unwrap(),
        }
    }

    /// A listening loopback TCP port: a connect there succeeds unless refused.
    fn tcp_port(&self) -> u16 {
        self.tcp.local_addr().unwrap().port()
    }

    /// A bound loopback UDP port.
    fn udp_port(&self) -> u16 {
        self.udp.local_addr().unwrap().port()
    }

    /// A policy file that sets `wall.mode`.
    fn wall_policy(&self, mode: &str) -> PathBuf {
        let path = self._tmp.path().join(format!("wall-{mode}.toml"));
        std::fs::write(&path, format!("[wall]\nmode = \"{mode}\"\n")).unwrap();
        path
    }
}

fn s(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

/// Runs `guest WHAT ARG` under `wall.mode = mode` with `grants` (CLI flags),
/// reporting to a file beside the scratch folders.
fn drill(
    scratch: &Scratch,
    guest: &str,
    mode: &str,
    grants: &[String],
    row: &Row,
) -> (Output, Option<serde_json::Value>) {
    let report = scratch._tmp.path().join(format!("report-{}-{mode}.json", row.what));
    let _ = std::fs::remove_file(&report);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmcell"));
    cmd.env(
        "WASMCELL_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasmcell-cache"),
    )
    .arg("run")
    .arg("--policy")
    .arg(scratch.wall_policy(mode))
    .arg("--report")
    .arg(&report)
    .args(grants)
    .args([guest, row.what, &row.arg])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let _turn = (row.what == "ptrace-parent").then(|| PTRACE.lock().unwrap_or_else(|e| e.into_inner()));
    let output = wait_for(cmd.spawn().expect("start wasmcell"));
    let report = std::fs::read(&report)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    (output, report)
}

/// Waits for `child`, killing it and failing the test past [`WATCHDOG`].
fn wait_for(mut child: std::process::Child) -> Output {
    let started = Instant::now();
    while child.try_wait().expect("wait for wasmcell").is_none() {
        if started.elapsed() > WATCHDOG {
            let _ = child.kill();
            panic!("wasmcell did not exit within {WATCHDOG:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("collect wasmcell's output")
}

/// What the run showed, as an [`Expect`], or a description of what it did
/// instead.
fn observed(what: &str, output: &Output) -> Result<Expect, String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix(&format!("drill {what}: ")));
    let refused = line.and_then(|l| l.strip_prefix("refused errno ")?.parse::<i32>().ok());
    let done = stdout.lines().any(|l| l == "drill done");
    match (line, refused, done, output.status.code()) {
        (Some("ok"), _, true, Some(0)) => Ok(Expect::Ok),
        (_, Some(errno), true, Some(0)) if errno > 0 => Ok(Refused(errno)),
        (None, _, false, Some(0)) if what == "exec" => Ok(Expect::Became),
        (None, _, false, Some(code)) if code == i32::from(wasmcell::EXIT_WALL) => Ok(Killed),
        _ => Err(format!("{}", output.status)),
    }
}

/// Runs every row and fails naming each row that did not show what it must,
/// with the run's output.
fn run_rows(scratch: &Scratch, guest: &str, mode: &str, grants: &[String], rows: &[Row]) {
    let mut failures = Vec::new();
    for row in rows {
        let expected = match (mode, row.what, row.wall) {
            ("off", "exec", _) => Expect::Became,
            ("off", _, _) => Expect::Ok,
            (_, _, wall) => wall,
        };
        let (output, report) = drill(scratch, guest, mode, grants, row);
        let seen = observed(row.what, &output);
        if seen != Ok(expected) {
            failures.push(format!(
                "{} {:?} under wall.mode={mode} {grants:?}: expected {expected:?}, got {seen:?}\n--- stdout ---\n{}--- stderr ---\n{}",
                row.what,
                row.arg,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            ));
            continue;
        }
        if mode != "off" {
            check_wall_report(mode, expected, report.as_ref())
                .unwrap_or_else(|why| failures.push(format!("{} {:?}: {why}", row.what, row.arg)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// The report of a run under the wall says every layer was in effect (this
/// kernel, Landlock ABI 7 with seccomp, supports them all, so a refusal above
/// was the wall's and not chance), and a killed run's says `wall-stopped`.
fn check_wall_report(mode: &str, expected: Expect, report: Option<&serde_json::Value>) -> Result<(), String> {
    let report = report.ok_or("no report was written")?;
    let status = if expected == Killed { "wall-stopped" } else { "exited" };
    if report["status"] != status {
        return Err(format!("the report's status is {}, not {status}", report["status"]));
    }
    let wall = &report["wall"];
    if wall["mode"] != mode {
        return Err(format!("the report's wall.mode is {}, not {mode}", wall["mode"]));
    }
    let layers = wall["layers"]
        .as_object()
        .ok_or_else(|| format!("the report's wall has no layers: {wall}"))?;
    let down: Vec<&String> = layers
        .iter()
        .filter(|(_, l)| l["in_effect"] != true)
        .map(|(name, _)| name)
        .collect();
    match (layers.len(), down.is_empty()) {
        (5, true) => Ok(()),
        _ => Err(format!("layers not in effect: {down:?} in {wall}")),
    }
}

mod drill_attempt {
    use super::*;

    #[test]
    fn every_attempt_succeeds_with_the_wall_off_module() {
        let scratch = Scratch::new();
        run_rows(&scratch, DRILL_ATTEMPT, "off", &[], &every_attempt(&scratch));
    }

    #[test]
    fn every_attempt_succeeds_with_the_wall_off_component() {
        let scratch = Scratch::new();
        run_rows(&scratch, DRILL_ATTEMPT_COMPONENT, "off", &[], &every_attempt(&scratch));
    }

    #[test]
    fn every_attempt_fails_under_the_wall_auto_module() {
        let scratch = Scratch::new();
        run_rows(&scratch, DRILL_ATTEMPT, "auto", &[], &every_attempt(&scratch));
    }

    #[test]
    fn every_attempt_fails_under_the_wall_require_component() {
        let scratch = Scratch::new();
        run_rows(
            &scratch,
            DRILL_ATTEMPT_COMPONENT,
            "require",
            &[],
            &every_attempt(&scratch),
        );
    }

    /// With `--allow-connect` for one loopback port, the host reaches that
    /// port and no other, and UDP (not granted) stays shut.
    fn only_the_granted_port(guest: &str, mode: &str) {
        let scratch = Scratch::new();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let grants = [format!("--allow-connect=127.0.0.1:{}", scratch.tcp_port())];
        let rows = [
            row("connect", scratch.tcp_port().to_string(), Expect::Ok),
            row(
                "connect",
                other.local_addr().unwrap().port().to_string(),
                Refused(EACCES),
            ),
            row("udp-send", scratch.udp_port().to_string(), Refused(EPERM)),
            row("unix-socket", "", Refused(EPERM)),
            row("packet-socket", "", Killed),
        ];
        run_rows(&scratch, guest, mode, &grants, &rows);
    }

    #[test]
    fn a_network_grant_opens_only_its_port_module() {
        only_the_granted_port(DRILL_ATTEMPT, "auto");
        only_the_granted_port(DRILL_ATTEMPT, "off");
    }

    #[test]
    fn a_network_grant_opens_only_its_port_component() {
        only_the_granted_port(DRILL_ATTEMPT_COMPONENT, "require");
        only_the_granted_port(DRILL_ATTEMPT_COMPONENT, "off");
    }

    /// With a read-only and a read-write grant, the host reads both, writes
    /// only the read-write one, and reaches nothing outside them.
    fn only_the_granted_files(guest: &str, mode: &str) {
        let scratch = Scratch::new();
        let grants = [
            format!("--ro-dir={}::/ro", s(&scratch.ro)),
            format!("--dir={}::/rw", s(&scratch.rw)),
        ];
        let rows = [
            row("read-file", s(&scratch.ro.join("ro.txt")), Expect::Ok),
            row("write-file", s(&scratch.ro.join("ro.txt")), Refused(EACCES)),
            row("write-file", s(&scratch.ro.join("new.txt")), Refused(EACCES)),
            row("read-file", s(&scratch.rw.join("rw.txt")), Expect::Ok),
            row("write-file", s(&scratch.rw.join("rw.txt")), Expect::Ok),
            row("write-file", s(&scratch.rw.join("new.txt")), Expect::Ok),
            row("read-file", s(&scratch.outside_file), Refused(EACCES)),
            row("write-file", s(&scratch.outside.join("new.txt")), Refused(EACCES)),
        ];
        run_rows(&scratch, guest, mode, &grants, &rows);
    }

    #[test]
    fn file_grants_open_only_their_files_with_their_access_module() {
        only_the_granted_files(DRILL_ATTEMPT, "auto");
        only_the_granted_files(DRILL_ATTEMPT, "off");
    }

    #[test]
    fn file_grants_open_only_their_files_with_their_access_component() {
        only_the_granted_files(DRILL_ATTEMPT_COMPONENT, "require");
        only_the_granted_files(DRILL_ATTEMPT_COMPONENT, "off");
    }

    /// The drill answers a request it cannot read with an error code, never
    /// by trapping or taking the host down: an unknown attempt, a port that
    /// is not one.
    #[test]
    fn the_drill_refuses_requests_it_cannot_read() {
        let scratch = Scratch::new();
        for guest in [DRILL_ATTEMPT, DRILL_ATTEMPT_COMPONENT] {
            for (what, arg, code) in [("teleport", "", -1), ("connect", "not-a-port", -2)] {
                let (output, _) = drill(&scratch, guest, "off", &[], &row(what, arg, Expect::Ok));
                let stdout = String::from_utf8_lossy(&output.stdout);
                assert_eq!(output.status.code(), Some(1), "{what} {arg}: {stdout}");
                assert!(stdout.contains(&format!("drill {what}: error {code}")), "{stdout}");
            }
        }
    }

    /// A preview 1 guest that hands the import strings outside its memory,
    /// or bytes that are not UTF-8, gets `-2` back: no trap, no host panic.
    #[test]
    fn the_drill_bounds_checks_guest_strings() {
        let scratch = Scratch::new();
        let wat = scratch._tmp.path().join("bad_strings.wat");
        std::fs::write(&wat, BAD_STRINGS).unwrap();
        let (output, _) = drill(
            &scratch,
            s(&wat).as_str(),
            "off",
            &[],
            &row("list-root", "", Expect::Ok),
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Exits 0 when every bad call answers -2, else with the number of the
    /// first call that did not. Its command-line arguments are ignored.
    const BAD_STRINGS: &str = r#"(module
        (import "wasmcell_drill" "attempt" (func $attempt (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (data (i32.const 16) "list-root")
        (data (i32.const 32) "\ff\fe")
        (func (export "_start")
            ;; what past the end of memory
            (if (i32.ne (call $attempt (i32.const 65530) (i32.const 9) (i32.const 0) (i32.const 0)) (i32.const -2))
                (then (call $exit (i32.const 1))))
            ;; a pointer that wraps around
            (if (i32.ne (call $attempt (i32.const -1) (i32.const 9) (i32.const 0) (i32.const 0)) (i32.const -2))
                (then (call $exit (i32.const 2))))
            ;; a length beyond any memory
            (if (i32.ne (call $attempt (i32.const 16) (i32.const -1) (i32.const 0) (i32.const 0)) (i32.const -2))
                (then (call $exit (i32.const 3))))
            ;; an argument that is not UTF-8
            (if (i32.ne (call $attempt (i32.const 16) (i32.const 9) (i32.const 32) (i32.const 2)) (i32.const -2))
                (then (call $exit (i32.const 4))))
            (call $exit (i32.const 0))))"#;
}

/// The drill in matrix cells: each cell runs in its own confined worker
/// process, so an attempt from a cell is refused, or kills that cell's
/// worker (`wall-stopped`, 159) and not the matrix. With `--in-process` the
/// cells run in the matrix's own process, without the wall, and the same
/// read gets through (so the cell's expectation fails).
#[test]
fn drill_in_matrix_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let (modules, policies) = (tmp.path().join("modules"), tmp.path().join("policies"));
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::create_dir_all(&policies).unwrap();
    for name in ["drill_exec", "drill_read", "drill_unix"] {
        std::fs::copy(DRILL_ATTEMPT, modules.join(format!("{name}.wasm"))).unwrap();
    }
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "secret").unwrap();
    std::fs::write(policies.join("deny-all.toml"), "").unwrap();
    std::fs::write(
        policies.join("expectations.toml"),
        format!(
            "[[module]]\nname = \"drill_exec\"\nargs = [\"exec\"]\n\
             [[module]]\nname = \"drill_read\"\nargs = [\"read-file\", \"{}\"]\n\
             [[module]]\nname = \"drill_unix\"\nargs = [\"unix-socket\"]\n\
             [[cell]]\nmodule = \"drill_exec\"\npolicy = \"*\"\nstatus = \"wall-stopped\"\nexit-code = 159\n\
             [[cell]]\nmodule = \"drill_read\"\npolicy = \"*\"\nexit-code = 0\nstdout-contains = \"drill read-file: refused errno {EACCES}\"\n\
             [[cell]]\nmodule = \"drill_unix\"\npolicy = \"*\"\nexit-code = 0\nstdout-contains = \"drill unix-socket: refused errno {EPERM}\"\n",
            secret.display()
        ),
    )
    .unwrap();
    let matrix = |extra: &[&str]| {
        let mut args = vec![
            "matrix",
            "--modules",
            modules.to_str().unwrap(),
            "--policies",
            policies.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let child = Command::new(env!("CARGO_BIN_EXE_wasmcell"))
            .args(&args)
            .env("WASMCELL_CACHE_DIR", tmp.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_for(child);
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, table) = matrix(&[]);
    assert_eq!(code, Some(0), "{table}");
    assert!(table.contains("3 cells: 3 matched"), "{table}");
    assert!(table.contains("wall: on"), "{table}");
    // Only the read: `exec` in-process would replace the matrix itself.
    let (code, table) = matrix(&["--in-process", "--filter", "drill_read"]);
    assert_eq!(code, Some(1), "the read gets through without the wall: {table}");
    assert!(table.contains("drill read-file: ok"), "{table}");
    assert!(table.contains("wall: off"), "{table}");
}
