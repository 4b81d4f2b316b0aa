//! Learn mode: `wasmcell learn` writes the narrowest policy a run needed and
//! proves it by running the guest again under it; `wasmcell matrix --learn`
//! does so per module; the library's `Learner` never learns more than the
//! run's policy granted, whatever a run reports.
//!
//! Each learned policy is checked for being minimal: with any one of its
//! grants removed, the same run is refused something or ends otherwise.

use crate::broker::plain_http;
use crate::{REPO, wait_for, wasmcell_command};
use std::path::Path;
use std::process::Output;
use wasmcell::learn::{Learner, Observed};
use wasmcell::policy::Policy;
use wasmcell_artifacts::{
    CPU_SIEVE, FS_OPS, FS_READ, HELLO, NET_DNS_LOOKUP_COMPONENT, NET_HTTP_GET_COMPONENT, NET_TCP_CONNECT_COMPONENT,
};

/// A folder with files a guest may read, one it may not need, and a secret.
fn tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    for (name, text) in [
        ("a.txt", "alpha\n"),
        ("b.txt", "beta\n"),
        ("secret.txt", "s3cret\n"),
        ("sub/c.txt", "gamma\n"),
    ] {
        std::fs::write(data.join(name), text).unwrap();
    }
    tmp
}

/// `wasmcell learn ARGS`, from `dir`.
fn learn(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = wasmcell_command();
    cmd.current_dir(dir).arg("learn").args(args);
    wait_for(cmd.spawn().expect("spawn wasmcell learn"))
}

/// `wasmcell run --report r.json --policy POLICY MODULE ARGS`, from `dir`:
/// the exit code and the report (its `stdout` the guest's).
fn run_under(dir: &Path, policy: &Path, module: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let mut cmd = wasmcell_command();
    cmd.current_dir(dir)
        .args(["run", "--report"])
        .arg(&report)
        .arg("--policy")
        .arg(policy)
        .arg(module)
        .args(args);
    let out = wait_for(cmd.spawn().expect("spawn wasmcell run"));
    let mut json: serde_json::Value = std::fs::read_to_string(&report)
        .map(|t| serde_json::from_str(&t).expect("the report parses"))
        .unwrap_or(serde_json::json!({}));
    json["stdout"] = String::from_utf8_lossy(&out.stdout).into();
    (out.status.code().unwrap_or(-1), json)
}

fn text(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn assert_learned(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "learn failed:\n{}", text(out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("runs it the same way"),
        "{}",
        text(out)
    );
}

/// The grants of a learned policy, each as the path of the value to remove:
/// `fs.files[i]`, `fs.dirs[i]`, `net.KEY[i]`, `net.dns`, `net.http[i]`.
fn grants(table: &toml::Table) -> Vec<(String, Option<usize>)> {
    let mut found = Vec::new();
    let arrays = [
        ("fs", "files"),
        ("fs", "dirs"),
        ("net", "tcp-connect"),
        ("net", "tcp-bind"),
        ("net", "udp-bind"),
        ("net", "udp-send"),
        ("net", "http"),
    ];
    for (section, key) in arrays {
        if let Some(items) = table.get(section).and_then(|s| s.get(key)).and_then(|v| v.as_array()) {
            found.extend((0..items.len()).map(|i| (format!("{section}.{key}"), Some(i))));
        }
    }
    if table.get("net").and_then(|n| n.get("dns")).is_some() {
        found.push(("net.dns".into(), None));
    }
    found
}

/// `table` without the grant at `path[index]`.
fn without(table: &toml::Table, (path, index): &(String, Option<usize>)) -> toml::Table {
    let mut table = table.clone();
    let (section, key) = path.split_once('.').unwrap();
    let section = table.get_mut(section).and_then(|s| s.as_table_mut()).unwrap();
    match index {
        Some(i) => {
            section.get_mut(key).and_then(|v| v.as_array_mut()).unwrap().remove(*i);
        }
        None => {
            section.remove(key);
        }
    }
    table
}

/// Every grant of the learned policy is needed: the run under the policy
/// without it ends otherwise than `code`, prints otherwise, or is refused
/// something.
#[track_caller]
fn assert_minimal(dir: &Path, learned: &Path, module: &str, args: &[&str], code: i32) {
    let table: toml::Table = std::fs::read_to_string(learned).unwrap().parse().unwrap();
    let grants = grants(&table);
    assert!(!grants.is_empty(), "the learned policy grants nothing:\n{table}");
    let (whole, report) = run_under(dir, learned, module, args);
    assert_eq!(
        (whole, report["denials"].as_array().map(Vec::len)),
        (code, Some(0)),
        "{report}"
    );
    let printed = report["stdout"].clone();
    for grant in grants {
        let less = learned.with_file_name("less.toml");
        std::fs::write(&less, without(&table, &grant).to_string()).unwrap();
        let (got, report) = run_under(dir, &less, module, args);
        let refused = report["denials"].as_array().is_some_and(|d| !d.is_empty());
        assert!(
            got != code || refused || report["stdout"] != printed,
            "without {}[{:?}] the run still ended with {got}, printed the same and was refused nothing: the grant is not needed",
            grant.0,
            grant.1
        );
    }
}

/// Reading two files of a folder learns two read-only file grants, pinned to
/// the module, proven by a second run; each is needed; a file the guest did
/// not read before is refused on a later run and named.
#[test]
fn learn_grants_only_the_files_a_run_read() {
    let tmp = tree();
    let dir = tmp.path();
    let out = learn(
        dir,
        &[
            "--output",
            "learned.toml",
            "--dir",
            "data::/data",
            FS_OPS,
            "read:/data/a.txt",
            "read:/data/b.txt",
        ],
    );
    assert_learned(&out);
    let learned = dir.join("learned.toml");
    let policy = std::fs::read_to_string(&learned).unwrap();
    assert!(
        policy.contains("[[fs.files]]\nhost = \"data/a.txt\"\nguest = \"/data/a.txt\"\naccess = \"read-only\""),
        "{policy}"
    );
    assert!(policy.contains("guest = \"/data/b.txt\""), "{policy}");
    assert!(
        !policy.contains("[[fs.dirs]]") && !policy.contains("secret"),
        "{policy}"
    );
    let digest = Policy::from_file(&learned)
        .unwrap()
        .module_sha256()
        .unwrap()
        .value
        .clone();
    assert_eq!(digest.len(), 1, "{policy}");
    // A policy like any other: `check` reads it.
    let mut cmd = wasmcell_command();
    cmd.current_dir(dir).args(["check", "learned.toml"]);
    let out = wait_for(cmd.spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/data/a.txt"),
        "{}",
        text(&out)
    );
    assert_minimal(dir, &learned, FS_OPS, &["read:/data/a.txt", "read:/data/b.txt"], 0);

    let (_, report) = run_under(dir, &learned, FS_OPS, &["read:/data/a.txt", "read:/data/secret.txt"]);
    let denials = report["denials"].to_string();
    assert!(
        denials.contains("/data/secret.txt"),
        "the extra read is not named: {report}"
    );
    // Another module is refused by the pin before it runs.
    let (code, _) = run_under(dir, &learned, CPU_SIEVE, &[]);
    assert_eq!(code, 126);
}

/// Writing in a read-write grant keeps it read-write and a folder; entries
/// never touched are denied and hidden when they are fewer than the ones
/// used; a read-write grant nothing was written in becomes read-only.
#[test]
fn learn_narrows_a_folder_to_what_was_used() {
    let tmp = tree();
    let dir = tmp.path();
    let ops = [
        "read:/data/a.txt",
        "read:/data/b.txt",
        "write:/data/sub/new.txt:hi",
        "read:/data/sub/c.txt",
    ];
    let mut args = vec!["--output", "learned.toml", "--dir", "data::/data", FS_OPS];
    args.extend(ops);
    assert_learned(&learn(dir, &args));
    let learned = dir.join("learned.toml");
    let policy = std::fs::read_to_string(&learned).unwrap();
    assert!(
        policy.contains("access = \"read-write\"\ndeny = [\"secret.txt\"]\nhide = true"),
        "{policy}"
    );
    assert_minimal(dir, &learned, FS_OPS, &ops, 0);
    let (_, report) = run_under(dir, &learned, FS_OPS, &["read:/data/secret.txt"]);
    assert!(report["denials"].to_string().contains("/data/secret.txt"), "{report}");

    let args = [
        "--output",
        "ro.toml",
        "--dir",
        "data::/data",
        FS_OPS,
        "ls:/data",
        "read:/data/a.txt",
    ];
    assert_learned(&learn(dir, &args));
    let policy = std::fs::read_to_string(dir.join("ro.toml")).unwrap();
    assert!(
        policy.contains("guest = \"/data\"\naccess = \"read-only\"\n"),
        "{policy}"
    );
    assert!(policy.contains("read-only: nothing was written there"), "{policy}");
    assert!(policy.contains("the guest listed the folder itself"), "{policy}");

    // Looking at the folder is not listing it: a file grant still does.
    let args = [
        "--output",
        "stat.toml",
        "--dir",
        "data::/data",
        FS_OPS,
        "meta:/data",
        "read:/data/a.txt",
    ];
    assert_learned(&learn(dir, &args));
    let learned = dir.join("stat.toml");
    let policy = std::fs::read_to_string(&learned).unwrap();
    assert!(
        policy.contains("guest = \"/data/a.txt\"") && !policy.contains("[[fs.dirs]]"),
        "{policy}"
    );
    assert_minimal(dir, &learned, FS_OPS, &["meta:/data", "read:/data/a.txt"], 0);
}

/// `--merge` adds a second run's uses to the first's: the merged policy runs
/// both, and grants nothing neither used.
#[test]
fn learn_merge_adds_a_second_runs_uses() {
    let tmp = tree();
    let dir = tmp.path();
    let first = [
        "--output",
        "learned.toml",
        "--dir",
        "data::/data",
        FS_OPS,
        "read:/data/a.txt",
    ];
    assert_learned(&learn(dir, &first));
    let second = [
        "--output",
        "learned.toml",
        "--merge",
        "learned.toml",
        "--dir",
        "data::/data",
        FS_OPS,
        "read:/data/sub/c.txt",
    ];
    assert_learned(&learn(dir, &second));
    let learned = dir.join("learned.toml");
    let policy = std::fs::read_to_string(&learned).unwrap();
    for args in [["read:/data/a.txt"], ["read:/data/sub/c.txt"]] {
        let (code, report) = run_under(dir, &learned, FS_OPS, &args);
        assert_eq!((code, report["denials"].to_string()), (0, "[]".to_string()), "{policy}");
    }
    let (_, report) = run_under(dir, &learned, FS_OPS, &["read:/data/secret.txt"]);
    assert!(
        report["denials"].to_string().contains("/data/secret.txt"),
        "{policy}\n{report}"
    );
}

/// A run refused something while learning: the learned policy does not
/// grant it, and learn exits 1 saying the proof run was refused.
#[test]
fn learn_fails_when_the_learned_policy_cannot_run_the_guest_cleanly() {
    let tmp = tree();
    let dir = tmp.path();
    std::fs::write(
        dir.join("base.toml"),
        "[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\ndeny = [\"secret.txt\"]\n",
    )
    .unwrap();
    let out = learn(
        dir,
        &[
            "--output",
            "learned.toml",
            "--policy",
            "base.toml",
            FS_OPS,
            "read:/data/a.txt",
            "read:/data/secret.txt",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused while learning, not granted: fs-read /data/secret.txt"),
        "{stderr}"
    );
    assert!(stderr.contains("use(s) were refused"), "{stderr}");
    let policy = std::fs::read_to_string(dir.join("learned.toml")).unwrap();
    assert!(policy.contains("# Refused while learning"), "{policy}");
}

/// The learned policy is written, and an earlier one read back, only where
/// the guest cannot write: inside a read-write grant both are refused
/// before anything runs.
#[test]
fn learn_refuses_output_and_merge_files_inside_a_read_write_grant() {
    let tmp = tree();
    let dir = tmp.path();
    std::fs::write(dir.join("data/old.toml"), "").unwrap();
    for args in [
        vec![
            "--output",
            "data/learned.toml",
            "--dir",
            "data::/data",
            FS_OPS,
            "read:/data/a.txt",
        ],
        vec![
            "--output",
            "ok.toml",
            "--merge",
            "data/old.toml",
            "--dir",
            "data::/data",
            FS_OPS,
        ],
    ] {
        let out = learn(dir, &args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("inside the read-write grant at `/data`"),
            "{}",
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).is_empty(),
            "the guest ran: {}",
            text(&out)
        );
    }
    // A merged policy that grants where the output goes is refused too.
    std::fs::create_dir_all(dir.join("kept")).unwrap();
    std::fs::write(
        dir.join("granting.toml"),
        "[[fs.dirs]]\nhost = \"kept\"\nguest = \"/kept\"\naccess = \"read-only\"\n",
    )
    .unwrap();
    let out = learn(dir, &["--output", "kept/l.toml", "--merge", "granting.toml", FS_OPS]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("inside the grant at `/kept`"),
        "{}",
        text(&out)
    );
    // A read-only grant would let the guest read the names a learned policy
    // hides; a link in place of the merged file would read another file.
    std::os::unix::fs::symlink(dir.join("data/old.toml"), dir.join("link.toml")).unwrap();
    for (args, why) in [
        (
            vec!["--output", "data/learned.toml", "--ro-dir", "data::/data", FS_OPS],
            "where the guest could read it",
        ),
        (
            vec!["--output", "ok.toml", "--merge", "link.toml", FS_OPS],
            "is a symbolic link",
        ),
    ] {
        let out = learn(dir, &args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(why), "{}", text(&out));
    }
}

/// A TCP connection to a loopback server learns exactly that address; the
/// learned policy is minimal and another port is refused and named.
#[test]
fn learn_grants_the_exact_address_a_run_connected_to() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for stream in listener.incoming().take(1 + 1 + 2).flatten() {
            let mut line = String::new();
            let _ = std::io::BufReader::new(&stream).read_line(&mut line);
            let _ = (&stream).write_all(b"pong\n");
        }
    });
    let out = learn(
        dir,
        &[
            "--output",
            "net.toml",
            "--allow-connect",
            "127.0.0.1:*",
            NET_TCP_CONNECT_COMPONENT,
            &addr,
        ],
    );
    assert_learned(&out);
    let learned = dir.join("net.toml");
    let policy = std::fs::read_to_string(&learned).unwrap();
    assert!(policy.contains(&format!("tcp-connect = [\"{addr}\"]")), "{policy}");
    assert!(!policy.contains("dns"), "{policy}");
    assert_minimal(dir, &learned, NET_TCP_CONNECT_COMPONENT, &[&addr], 0);
    drop(server);
    let other = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (_, report) = run_under(dir, &learned, NET_TCP_CONNECT_COMPONENT, &[&other]);
    assert!(report["denials"].to_string().contains(&other), "{report}");
}

/// HTTP requests learn one entry per origin with the methods and paths
/// used; a path not requested while learning is refused and named.
#[test]
fn learn_grants_the_methods_and_paths_a_run_requested() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = plain_http();
    let (one, two) = (
        format!("{}/v1/items", server.origin),
        format!("{}/v1/items/7", server.origin),
    );
    let out = learn(
        dir,
        &[
            "--output",
            "http.toml",
            "--allow-http",
            "http://127.0.0.1:*",
            NET_HTTP_GET_COMPONENT,
            &one,
            &two,
        ],
    );
    assert_learned(&out);
    let learned = dir.join("http.toml");
    let policy = std::fs::read_to_string(&learned).unwrap();
    let entry = format!(
        "[[net.http]]\norigin = \"{}\"\nmethods = [\"GET\"]\npaths = [\"/v1/items\", \"/v1/items/7\"]\n",
        server.origin
    );
    assert!(policy.contains(&entry), "{policy}");
    assert!(policy.contains("http-requests = 16"), "{policy}");
    assert_minimal(dir, &learned, NET_HTTP_GET_COMPONENT, &[&one, &two], 0);
    let admin = format!("{}/admin", server.origin);
    let (_, report) = run_under(dir, &learned, NET_HTTP_GET_COMPONENT, &[&admin]);
    assert!(report["denials"].to_string().contains("/admin"), "{report}");
}

/// `dns = true` is learned only when a lookup happened.
#[test]
fn learn_grants_name_lookups_only_after_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("base.toml"), "[net]\ndns = true\n").unwrap();
    assert_learned(&learn(
        dir,
        &[
            "--output",
            "dns.toml",
            "--policy",
            "base.toml",
            NET_DNS_LOOKUP_COMPONENT,
            "localhost",
        ],
    ));
    let learned = dir.join("dns.toml");
    let policy = std::fs::read_to_string(&learned).unwrap();
    assert!(policy.contains("# names looked up: localhost\ndns = true"), "{policy}");
    assert_minimal(dir, &learned, NET_DNS_LOOKUP_COMPONENT, &["localhost"], 0);
    assert_learned(&learn(dir, &["--output", "none.toml", "--policy", "base.toml", HELLO]));
    let policy = std::fs::read_to_string(dir.join("none.toml")).unwrap();
    assert!(!policy.contains("[net]"), "{policy}");
}

/// Limits come from what was measured, with the stated headroom, and never
/// above what the run was given.
#[test]
fn learn_sets_limits_from_what_was_measured() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = learn(
        dir,
        &[
            "--output",
            "cpu.toml",
            "--fuel",
            "50000000000",
            "--memory",
            "64MiB",
            CPU_SIEVE,
        ],
    );
    assert_learned(&out);
    let text = std::fs::read_to_string(dir.join("cpu.toml")).unwrap();
    let measured: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("# most fuel measured: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the measured fuel is stated");
    let policy = Policy::from_file(dir.join("cpu.toml")).unwrap();
    assert_eq!(policy.limits().fuel.value, Some(measured * 4), "{text}");
    // Wall time: x5, rounded up to a second, at least 2 s.
    let ms: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("# longest run measured: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the measured time is stated");
    let secs = ((ms + 1) * 5).div_ceil(1000).max(2);
    let timeout = policy.limits().timeout.value.as_secs();
    assert!(
        timeout == secs || timeout + 1 == secs,
        "{timeout} s for {ms} ms:\n{text}"
    );
    let memory = policy.limits().memory.value;
    assert!(memory.is_multiple_of(1 << 20) && memory <= 64 << 20, "{text}");
    assert!(text.contains("# peak memory measured: "), "{text}");
    // Capped by what the run was given.
    let out = learn(
        dir,
        &[
            "--output",
            "small.toml",
            "--memory",
            "2MiB",
            "--timeout",
            "1s",
            CPU_SIEVE,
        ],
    );
    assert_learned(&out);
    let policy = Policy::from_file(dir.join("small.toml")).unwrap();
    assert!(policy.limits().memory.value <= 2 << 20);
    assert_eq!(policy.limits().timeout.value, std::time::Duration::from_secs(1));
}

/// A report is as trustworthy as the process that made it: a run claiming
/// uses its policy did not allow (paths outside or denied inside its
/// grants, writes to a read-only grant, addresses and origins not listed)
/// learns none of them, and no text it names reaches a line of the policy.
#[test]
fn learn_never_grants_what_the_runs_policy_did_not() {
    let tmp = tree();
    let dir = tmp.path();
    let policy = Policy::from_toml(
        "[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\ndeny = [\"secret.txt\"]\n\
         [net]\ntcp-connect = [\"127.0.0.1:80\"]\n",
        dir,
    )
    .unwrap();
    let forged = "x\n[[fs.dirs]]\nhost = \"/\"\nguest = \"/host\"\naccess = \"read-write\"";
    let uses = [
        ("fs-read", "/data/secret.txt"),
        ("fs-read", "/etc/passwd"),
        ("fs-read", "/data/../etc/passwd"),
        ("fs-write", "/data/a.txt"),
        ("fs-create", "/data/new.txt"),
        ("tcp-connect", "127.0.0.1:22"),
        ("udp-send", "127.0.0.1:53"),
        ("dns", "example.com"),
        ("http", "GET http://127.0.0.1:80/"),
        ("fs-read", forged),
        ("fs-read", "/data/b.txt"),
    ];
    let seen: Vec<_> = uses
        .iter()
        .map(
            |(kind, target)| serde_json::json!({"kind": kind, "target": target, "decision": "allowed", "rule": forged}),
        )
        .chain([serde_json::json!({"kind": "fs-read", "target": forged, "decision": "denied", "rule": forged})])
        .collect();
    let report = serde_json::json!({
        "status": "exited", "exit_code": 0, "elapsed_ms": 1.0, "peak_memory_bytes": 65536,
        "uses": {}, "http": {}, "uses_seen": {"uses": seen, "dropped": 0},
    });
    let observed = Observed::from_report(&report).unwrap();
    let mut learner = Learner::new();
    learner.add_run("forged", &policy, &observed).unwrap();
    let text = learner.write(dir);
    let table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    let files = table
        .get("fs")
        .and_then(|f| f.get("files"))
        .and_then(|f| f.as_array())
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(files.len(), 1, "{text}");
    assert_eq!(files[0]["guest"].as_str(), Some("/data/b.txt"), "{text}");
    assert_eq!(files[0]["access"].as_str(), Some("read-only"), "{text}");
    assert!(
        table["fs"].get("dirs").is_none() && table.get("net").is_none(),
        "{text}"
    );
    assert!(
        text.contains("10 reported use(s) that the run's own policy does not allow were not learned"),
        "{text}"
    );
    let learned = dir.join("forged.toml");
    std::fs::write(&learned, &text).unwrap();
    assert_eq!(Policy::from_file(&learned).unwrap().dirs().len(), 1, "{text}");
}

/// `matrix --learn` learns one policy per module from all its cells and
/// proves each; a folder inside a read-write grant of a policy is refused.
#[test]
fn matrix_learn_writes_and_proves_a_policy_per_module() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("learned");
    let mut cmd = wasmcell_command();
    cmd.args(["matrix", "--modules", HELLO, FS_READ])
        .args(["--policies", "policies/read-only.toml", "policies/deny-all.toml"])
        .args(["--expect", "policies/expectations.toml", "--learn"])
        .arg(&out_dir);
    let out = wait_for(cmd.spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("hello.toml: proven") && stdout.contains("fs_read.toml: proven"),
        "{stdout}"
    );
    let fs_read_policy = std::fs::read_to_string(out_dir.join("fs_read.toml")).unwrap();
    assert!(fs_read_policy.contains("[[fs.files]]"), "{fs_read_policy}");
    assert!(
        !std::fs::read_to_string(out_dir.join("hello.toml"))
            .unwrap()
            .contains("[fs")
    );

    let mut cmd = wasmcell_command();
    let inside = Path::new(REPO).join("policies/data/learned");
    cmd.args([
        "matrix",
        "--modules",
        HELLO,
        "--policies",
        "policies/scratch.toml",
        "--learn",
    ])
    .arg(&inside);
    // A read-only grant reaches it too (scratch.toml extends read-only.toml).
    let out = wait_for(cmd.spawn().unwrap());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("inside the grant at `/data`"),
        "{}",
        text(&out)
    );
    assert!(!inside.exists(), "the refused folder was created");
}

/// A report under one policy cannot reach through a link in a grant to a
/// host file, and what several policies or an earlier learned policy said
/// is combined without widening: the strictest rules of every policy that
/// granted a folder, a denial a person wrote kept unless a run used the
/// name, a listen allowed only on an ephemeral port learned as port 0, a
/// method that is not one not learned.
#[test]
fn learn_combines_policies_without_widening_any() {
    let tmp = tree();
    let dir = tmp.path();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("k"), "key").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.join("data/link")).unwrap();
    let report = |uses: &[(&str, &str)]| {
        let seen: Vec<_> = uses
            .iter()
            .map(
                |(kind, target)| serde_json::json!({"kind": kind, "target": target, "decision": "allowed", "rule": ""}),
            )
            .collect();
        Observed::from_report(&serde_json::json!({
            "status": "exited", "exit_code": 0, "elapsed_ms": 1.0, "peak_memory_bytes": 65536,
            "uses": {}, "http": {}, "uses_seen": {"uses": seen, "dropped": 0},
        }))
        .unwrap()
    };
    let ro = Policy::from_toml(
        "[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\n\
         [net]\ntcp-bind = [\"127.0.0.1:0\"]\nhttp = [\"http://127.0.0.1:*\"]\n",
        dir,
    )
    .unwrap();
    let rw = Policy::from_toml(
        "[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-write\"\nread-only = [\"b.txt\"]\n",
        dir,
    )
    .unwrap();
    let mut learner = Learner::new();
    let under_ro = report(&[
        ("fs-read", "/data/link/k"),
        ("fs-read", "/data/b.txt"),
        ("tcp-listen", "127.0.0.1:8080"),
        ("http", "* http://127.0.0.1:80/x"),
        ("http", "get http://127.0.0.1:80/y"),
    ]);
    learner.add_run("ro", &ro, &under_ro).unwrap();
    learner
        .add_run("rw", &rw, &report(&[("fs-write", "/data/a.txt")]))
        .unwrap();
    let text = learner.write(dir);
    let table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(
        table["fs"].get("files").is_none(),
        "a file grant reaches through the link:\n{text}"
    );
    let data = &table["fs"]["dirs"][0];
    assert_eq!(data["access"].as_str(), Some("read-write"), "{text}");
    assert_eq!(
        data["read-only"].as_array().map(Vec::len),
        Some(1),
        "the read-only rule was lost:\n{text}"
    );
    assert_eq!(table["net"]["tcp-bind"][0].as_str(), Some("127.0.0.1:0"), "{text}");
    assert!(
        table["net"].get("http").is_none(),
        "a method that is not one was learned:\n{text}"
    );
    Policy::from_toml(&text, dir).unwrap_or_else(|e| panic!("{e}\n{text}"));

    // A file read through a link in the grant is not granted as that file.
    let mut learner = Learner::new();
    learner
        .add_run("ro", &ro, &report(&[("fs-read", "/data/link/k")]))
        .unwrap();
    let text = learner.write(dir);
    assert!(!text.contains("[[fs.files]]") && !text.contains("link/k"), "{text}");

    // An earlier learned policy's denials stay unless a run used the name,
    // however few names the runs used.
    let earlier = dir.join("earlier.toml");
    std::fs::write(
        &earlier,
        "[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\n\
         deny = [\"a.txt\", \"b.txt\", \"secret.txt\", \"link\", \"sub\"]\n",
    )
    .unwrap();
    let mut learner = Learner::new();
    learner
        .add_run("ro", &ro, &report(&[("fs-read", "/data/sub/c.txt")]))
        .unwrap();
    learner.add_policy(&Policy::from_file(&earlier).unwrap()).unwrap();
    let text = learner.write(dir);
    let table: toml::Table = text.parse().unwrap();
    let deny: Vec<&str> = table["fs"]["dirs"][0]["deny"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(deny, ["a.txt", "b.txt", "link", "secret.txt"], "{text}");

    // A folder swapped for a link after the run (as a guest with a
    // read-write grant around it can) is not granted where it now leads.
    std::fs::create_dir_all(dir.join("work/inputs")).unwrap();
    let nested = Policy::from_toml(
        "[[fs.dirs]]\nhost = \"work\"\nguest = \"/work\"\naccess = \"read-write\"\n\
         [[fs.dirs]]\nhost = \"work/inputs\"\nguest = \"/inputs\"\naccess = \"read-write\"\n",
        dir,
    )
    .unwrap();
    let mut learner = Learner::new();
    learner
        .add_run("swap", &nested, &report(&[("fs-write", "/inputs/a")]))
        .unwrap();
    std::fs::rename(dir.join("work/inputs"), dir.join("work/x")).unwrap();
    std::os::unix::fs::symlink("..", dir.join("work/inputs")).unwrap();
    let text = learner.write(dir);
    assert!(!text.contains("guest = \"/inputs\""), "{text}");
    assert!(
        text.contains("/inputs: its host path is now reached through a link: not granted"),
        "{text}"
    );

    // Denials an earlier policy made stay when its folder is granted whole
    // beside a run's grant inside it.
    std::fs::write(
        &earlier,
        "[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\ndeny = [\"secret.txt\", \"link\"]\n",
    )
    .unwrap();
    let inner = Policy::from_toml(
        "[[fs.dirs]]\nhost = \"data/sub\"\nguest = \"/data/sub\"\naccess = \"read-write\"\n",
        dir,
    )
    .unwrap();
    let mut learner = Learner::new();
    learner
        .add_run("inner", &inner, &report(&[("fs-write", "/data/sub/new")]))
        .unwrap();
    learner.add_policy(&Policy::from_file(&earlier).unwrap()).unwrap();
    let text = learner.write(dir);
    assert!(
        text.contains("deny = [\"link\", \"secret.txt\"]"),
        "an earlier denial was lost:\n{text}"
    );
}

/// What a run cannot measure is kept as the policy had it: precompiled code
/// has no digest of its own, so the pins it ran under stay (else the learned
/// policy would run any module), and a run without fuel metering keeps the
/// fuel limit it was given (else the learned policy would meter nothing).
#[test]
fn learn_keeps_the_pin_and_fuel_a_run_could_not_measure() {
    let tmp = tempfile::tempdir().unwrap();
    let pin = "ab".repeat(32);
    let policy = Policy::from_toml(
        &format!("[module]\nsha256 = \"{pin}\"\n[limits]\nfuel = 123456\n"),
        tmp.path(),
    )
    .unwrap();
    let observed = Observed::from_report(&serde_json::json!({
        "status": "exited", "exit_code": 0, "elapsed_ms": 1.0, "peak_memory_bytes": 65536,
        "fuel_used": null, "module_sha256": null,
        "uses": {}, "http": {}, "uses_seen": {"uses": [], "dropped": 0},
    }))
    .unwrap();
    let mut learner = Learner::new();
    learner.add_run("precompiled", &policy, &observed).unwrap();
    let text = learner.write(tmp.path());
    let learned = Policy::from_toml(&text, tmp.path()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        learned.module_sha256().map(|p| p.value.clone()),
        Some(vec![pin]),
        "{text}"
    );
    assert_eq!(learned.limits().fuel.value, Some(123_456), "{text}");
}
