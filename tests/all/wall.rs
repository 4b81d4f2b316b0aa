//! The second wall as `wasmcell run` and `wasmcell check` put it up and say
//! so: every layer in effect on this kernel (Landlock ABI 7, seccomp),
//! `require` refusing what the kernel lacks, `auto` naming it, `off` saying
//! it is off, and the watcher reporting a run the wall killed. The escape
//! drill (`tests/wall_drill.rs`) attacks the wall itself.

use crate::{BIN, wait_for, wasmcell_command};
use std::process::Output;
use wasmcell_artifacts::{HELLO, HELLO_COMPONENT, LIMITS_SLEEP_FOREVER};

fn run(args: &[&str]) -> Output {
    wait_for(wasmcell_command().args(args).spawn().unwrap())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The report a run wrote to `--report-fd 3`, read back.
fn run_with_report(args: &[&str]) -> (Output, serde_json::Value) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("report.json");
    let mut all = vec!["run", "--report", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run(&all);
    let report = std::fs::read_to_string(&path).unwrap_or_default();
    (out, serde_json::from_str(&report).unwrap_or_default())
}

const LAYERS: [&str; 5] = [
    "no-new-privs",
    "landlock-filesystem",
    "landlock-network",
    "landlock-scopes",
    "seccomp",
];

#[test]
fn a_run_puts_up_every_layer_of_the_wall_and_says_so() {
    for guest in [HELLO, HELLO_COMPONENT] {
        // --no-cache: the guest is compiled in this run, on threads that
        // must be gone before the wall goes up.
        for cache in [&[][..], &["--no-cache"][..]] {
            let mut args = cache.to_vec();
            args.push(guest);
            let (out, report) = run_with_report(&args);
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            assert_eq!(stderr(&out), "", "a complete wall prints nothing");
            let wall = &report["wall"];
            assert_eq!(wall["mode"], "auto");
            assert_eq!(wall["landlock_abi"], 7, "{wall}");
            for layer in LAYERS {
                assert_eq!(wall["layers"][layer]["in_effect"], true, "{layer}: {wall}");
            }
        }
    }
}

#[test]
fn require_refuses_a_kernel_below_the_landlock_abi_it_asks_for_before_the_guest_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("p.toml");
    std::fs::write(&policy, "[wall]\nlandlock-abi = 42\n").unwrap();
    let out = run(&["run", "--wall", "require", "--policy", policy.to_str().unwrap(), HELLO]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "the guest did not run");
    let err = stderr(&out);
    for want in [
        "wall.mode is `require`",
        "landlock-filesystem",
        "wall.landlock-abi 42",
        "--wall auto",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
    // The same policy file saying `require` itself.
    std::fs::write(&policy, "[wall]\nmode = \"require\"\nlandlock-abi = 42\n").unwrap();
    let out = run(&["run", "--policy", policy.to_str().unwrap(), HELLO]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn auto_puts_up_what_it_can_and_names_each_missing_layer_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("p.toml");
    std::fs::write(&policy, "[wall]\nlandlock-abi = 42\n").unwrap();
    let (out, report) = run_with_report(&["--policy", policy.to_str().unwrap(), HELLO]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("second wall")).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    for layer in ["landlock-filesystem", "landlock-network", "landlock-scopes"] {
        assert!(lines[0].contains(layer), "{layer} named: {err}");
        assert_eq!(report["wall"]["layers"][layer]["in_effect"], false);
    }
    assert!(!lines[0].contains("seccomp"), "seccomp is up: {err}");
    assert_eq!(report["wall"]["layers"]["seccomp"]["in_effect"], true);
    assert_eq!(report["wall"]["layers"]["no-new-privs"]["in_effect"], true);
}

#[test]
fn wall_off_is_said_on_stderr_and_in_the_report() {
    let (out, report) = run_with_report(&["--wall", "off", HELLO]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("the second wall is off (--wall)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(report["wall"]["mode"], "off");
    for layer in LAYERS {
        assert_eq!(report["wall"]["layers"][layer]["in_effect"], false, "{layer}");
    }
}

#[test]
fn the_watcher_reports_a_run_killed_by_sigsys_as_stopped_by_the_wall() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report.json");
    let mut child = wasmcell_command()
        .args([
            "run",
            "--timeout",
            "1h",
            "--report",
            report.to_str().unwrap(),
            LIMITS_SLEEP_FOREVER,
        ])
        .spawn()
        .unwrap();
    wait_until_sleeping(&mut child);
    // The run is the watcher's child: the process seccomp would kill.
    let run = run_process(&child);
    // SAFETY: sends a signal to the run's process, a child of the test's own child.
    assert_eq!(unsafe { libc::kill(run, libc::SIGSYS) }, 0);
    let out = wait_for(child);
    assert_eq!(out.status.code(), Some(159), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the second wall stopped the run"),
        "{}",
        stderr(&out)
    );
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["status"], "wall-stopped");
    assert_eq!(json["exit_code"], 159);
    assert_eq!(
        json["wall"]["layers"]["seccomp"]["in_effect"], true,
        "the wall the run reported"
    );
}

#[test]
fn check_describes_the_wall_a_policy_gets_here() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let policy = tmp.path().join("p.toml");
    std::fs::write(
        &policy,
        "[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\n\
         [net]\ntcp-connect = [\"127.0.0.1:8080\"]\n",
    )
    .unwrap();
    let out = wait_for(
        std::process::Command::new(BIN)
            .args(["check", policy.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("second wall (default wall.mode: auto)"), "{text}");
    for layer in LAYERS {
        assert!(text.contains(&format!("{layer:<20} in effect")), "{layer}: {text}");
    }
    let data = std::fs::canonicalize(&data).unwrap();
    assert!(text.contains(&format!("path {} (read)", data.display())), "{text}");
    assert!(text.contains("tcp connect ports: 8080"), "{text}");
    assert!(text.contains("sockets: TCP over IPv4 and IPv6"), "{text}");

    std::fs::write(&policy, "[wall]\nmode = \"off\"\n").unwrap();
    let out = wait_for(
        std::process::Command::new(BIN)
            .args(["check", policy.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("warning: the wall is off"), "{text}");
}

/// The pid of the run process under a `wasmcell run` watcher (its only child).
fn run_process(watcher: &std::process::Child) -> i32 {
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", watcher.id())).unwrap();
    children
        .split_whitespace()
        .next()
        .expect("the run's process")
        .parse()
        .unwrap()
}

/// Waits for the guest's `sleeping` line on the child's stdout.
fn wait_until_sleeping(child: &mut std::process::Child) {
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line, "sleeping\n");
}

#[test]
fn the_run_holds_no_descriptor_it_inherited_nor_the_report_fd() {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::CommandExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let report = std::fs::File::create(tmp.path().join("report.json")).unwrap();
    let (inherited, _keep) = std::io::pipe().unwrap();
    let (report_fd, inherited_fd) = (report.as_raw_fd(), inherited.as_raw_fd());
    let mut command = wasmcell_command();
    command.args(["run", "--timeout", "1h", "--report-fd", "3", LIMITS_SLEEP_FOREVER]);
    // SAFETY: between fork and exec, only dup2 and fcntl (async-signal-safe):
    // the report as fd 3 and a pipe end as fd 7, both without close-on-exec
    // (dup2 onto itself would keep the flag, so that case clears it).
    unsafe {
        command.pre_exec(move || {
            for (from, to) in [(report_fd, 3), (inherited_fd, 7)] {
                let rc = match from == to {
                    true => libc::fcntl(to, libc::F_SETFD, 0),
                    false => libc::dup2(from, to),
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    wait_until_sleeping(&mut child);
    let run = run_process(&child);
    // What each descriptor is, by the link /proc shows for it (a number
    // freed may be taken again by something the run opened itself).
    let targets = |pid: i32| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .collect()
    };
    let (report_file, pipe) = (
        std::fs::read_link(format!("/proc/self/fd/{report_fd}")).unwrap(),
        std::fs::read_link(format!("/proc/self/fd/{inherited_fd}")).unwrap(),
    );
    let held = targets(run);
    assert!(
        !held.contains(&report_file),
        "the run holds the report's file: {held:?}"
    );
    assert!(!held.contains(&pipe), "the run holds the inherited pipe: {held:?}");
    let watcher = i32::try_from(child.id()).unwrap();
    assert!(
        targets(watcher).contains(&report_file),
        "the watcher keeps the report's"
    );
    // SAFETY: ends the test's own grandchild.
    unsafe { libc::kill(run, libc::SIGTERM) };
    let out = wait_for(child);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["status"], "cancelled", "the watcher wrote the report to fd 3");
}

#[test]
fn the_watcher_kills_a_run_that_outlives_its_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report.json");
    let mut child = wasmcell_command()
        .args([
            "run",
            "--timeout",
            "300ms",
            "--report",
            report.to_str().unwrap(),
            LIMITS_SLEEP_FOREVER,
        ])
        .spawn()
        .unwrap();
    wait_until_sleeping(&mut child);
    // A stopped run never reaches its own deadline, as one whose runtime
    // was subverted might not.
    // SAFETY: stops the test's own grandchild.
    unsafe { libc::kill(run_process(&child), libc::SIGSTOP) };
    let out = wait_for(child);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(stderr(&out).contains("killed by its watcher"), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["status"], "timeout");
    assert_eq!(json["wall"]["layers"]["seccomp"]["in_effect"], true);
}
