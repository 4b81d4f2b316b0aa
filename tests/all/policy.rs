//! Policy files: every bundled policy in `policies/` loads and says what it
//! grants, the bundled read-only policy works with a real guest, and broken
//! files are reported with their file and line.

use crate::{assert_status, both, run, stdout};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use wasmcell::{Access, Clocks, Origin, Policy, PolicyErrorKind, Status};

fn policies_dir() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("policies")
}

fn bundled(name: &str) -> Policy {
    let path = policies_dir().join(name);
    Policy::from_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_bundled_policy_loads() {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(policies_dir()).unwrap() {
        let path = entry.unwrap().path();
        // The matrix's expectations live beside the policies but are not one;
        // tests/all/matrix.rs checks them.
        let is_expectations = path
            .file_name()
            .is_some_and(|n| n == wasmcell::matrix::EXPECTATIONS_FILE);
        if path.extension().is_some_and(|e| e == "toml") && !is_expectations {
            let policy = Policy::from_file(&path).unwrap_or_else(|e| panic!("bundled policy is invalid: {e}"));
            assert_eq!(policy.source(), Some(path.as_path()));
            let description = wasmcell::policy::summarize(&policy);
            assert!(!description.trim().is_empty(), "{}", path.display());
            assert!(description.contains("limits:"), "{}:\n{description}", path.display());
            found.push(path);
        }
    }
    let mut names: Vec<String> = found
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // Exact, so a policy that fails to be found (or a new one nobody listed
    // here, in the README and in expectations.toml) fails the test.
    let bundled = [
        "agent-workspace",
        "deny-all",
        "deterministic",
        "interactive",
        "loopback-client",
        "read-only",
        "scratch",
        "tight",
    ];
    assert_eq!(names, bundled, "policies/ holds {found:?}");
}

/// The examples in `policies/examples/` (policies the matrix does not run:
/// they need a host's secrets) load, and `wasmcell check` names each
/// `[[net.http]]` entry and secret, never a value.
#[test]
fn every_example_policy_loads() {
    let mut found = 0;
    for entry in std::fs::read_dir(policies_dir().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let policy = Policy::from_file(&path).unwrap_or_else(|e| panic!("example policy is invalid: {e}"));
        let description = wasmcell::policy::summarize(&policy);
        assert!(description.contains("limits:"), "{}:\n{description}", path.display());
        found += 1;
    }
    let agent = Policy::from_file(policies_dir().join("examples/agent-broker.toml")).unwrap();
    let description = wasmcell::policy::summarize(&agent);
    for line in [
        "may make HTTP requests to https://api.github.com, methods GET, paths /repos/acme/**, /user, /user/repos, except /repos/acme/*/actions/secrets/**, /repos/acme/*/hooks/**, may carry secret github",
        "may make HTTP requests to https://uploads.github.com, methods POST, paths /repos/acme/*/releases/*/assets, sets header `authorization` from secret github, may carry secret github",
        "secret github: read from the host environment variable `GITHUB_TOKEN` when a run starts",
    ] {
        assert!(description.contains(line), "`{line}` missing from:\n{description}");
    }
    assert_eq!(found, 1);
}

#[test]
fn deny_all_grants_nothing() {
    let p = bundled("deny-all.toml");
    assert!(p.dirs().is_empty());
    assert!(p.env_vars().is_empty());
    assert!(p.env_inherit().is_empty());
    assert!(p.guest_env().is_empty());
    assert_eq!(p.limits().fuel.value, None);
    // The file spells out the built-in defaults, so it equals the built-in
    // policy in everything but where each value came from.
    let builtin = Policy::deny_all();
    assert_eq!(p.limits().memory.value, builtin.limits().memory.value);
    assert_eq!(p.limits().timeout.value, builtin.limits().timeout.value);
    assert_eq!(p.limits().stack.value, builtin.limits().stack.value);
    assert_eq!(p.limits().output.value, builtin.limits().output.value);
    assert_eq!(p.limits().module_size.value, builtin.limits().module_size.value);
    assert_eq!(p.stdin(), builtin.stdin());
    assert_eq!(p.clocks(), builtin.clocks());
    assert_eq!(p.seed(), None);
}

#[test]
fn read_only_grants_data_read_only_over_deny_all() {
    let p = bundled("read-only.toml");
    assert_eq!(p.dirs().len(), 1);
    let data = &p.dirs()[0];
    assert_eq!(data.guest, "/data");
    assert_eq!(data.access, Access::ReadOnly);
    assert_eq!(data.host, policies_dir().join("data").canonicalize().unwrap());
    assert_eq!(p.extends().len(), 1);
    assert!(p.extends()[0].ends_with("deny-all.toml"), "{:?}", p.extends());
    assert!(
        matches!(&p.limits().memory.origin, Origin::File { path, .. } if *path == p.extends()[0]),
        "limits come from the file it extends: {:?}",
        p.limits().memory.origin
    );
    assert_eq!(p.env_vars().get("LANG").map(String::as_str), Some("C.UTF-8"));
}

#[test]
fn scratch_grants_data_and_scratch() {
    let p = bundled("scratch.toml");
    let dirs: Vec<(&str, Access)> = p.dirs().iter().map(|d| (d.guest.as_str(), d.access)).collect();
    assert_eq!(dirs, [("/data", Access::ReadOnly), ("/scratch", Access::ReadWrite)]);
    assert_eq!(p.dirs()[1].host, policies_dir().join("scratch").canonicalize().unwrap());
    assert_eq!(p.limits().timeout.value, Duration::from_secs(30));
}

#[test]
fn deterministic_freezes_clocks_and_seeds_randomness() {
    let p = bundled("deterministic.toml");
    let y2k = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800);
    assert_eq!(p.clocks(), &Clocks::Frozen { start: y2k });
    assert_eq!(p.seed(), Some(42));
    assert!(p.limits().fuel.value.is_some());
}

#[test]
fn tight_has_small_budgets() {
    let p = bundled("tight.toml");
    assert_eq!(p.limits().fuel.value, Some(50_000_000));
    assert_eq!(p.limits().memory.value, 16 << 20);
    assert_eq!(p.limits().timeout.value, Duration::from_secs(2));
    assert_eq!(p.limits().output.value, 64 << 10);
    assert!(p.dirs().is_empty());
}

#[test]
fn fs_read_under_bundled_read_only_policy() {
    let expected = std::fs::read_to_string(policies_dir().join("data/hello.txt")).unwrap();
    for guest in both(wasmcell_artifacts::FS_READ, wasmcell_artifacts::FS_READ_COMPONENT) {
        let outcome = run(bundled("read-only.toml"), guest, &["/data/hello.txt"]);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(stdout(&outcome), expected, "{guest}");
    }
}

// ---------------------------------------------------------------------------
// Errors name the file and line.
// ---------------------------------------------------------------------------

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The per-request HTTP limits from a file, a flag and the builder, checked
/// alike, with their defaults, and described.
#[test]
fn limits_http_request_bounds_are_settings_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[limits]\nhttp-request-body = \"1 KiB\"\nhttp-response-body = 0\nhttp-timeout = \"2s\"\n";
    let p = Policy::from_file(write(dir.path(), "h.toml", text)).unwrap();
    let limits = p.limits();
    assert_eq!(limits.http_request_body.value, 1024);
    assert_eq!(limits.http_response_body.value, 0);
    assert_eq!(limits.http_timeout.value, Duration::from_secs(2));
    let defaults = Policy::deny_all();
    let defaults = defaults.limits();
    assert_eq!(
        (
            defaults.http_request_body.value,
            defaults.http_response_body.value,
            defaults.http_timeout.value
        ),
        (16 << 20, 64 << 20, Duration::from_secs(30))
    );
    let described = wasmcell::policy::summarize(&p);
    for line in [
        "  http-request-body: 1 KiB per request (from ",
        "  http-response-body: 0 B per response (from ",
        "  http-timeout: 2s per request (from ",
    ] {
        assert!(described.contains(line), "{line}: {described}");
    }
    let e = Policy::from_file(write(dir.path(), "t.toml", "[limits]\n\nhttp-timeout = \"0s\"\n")).unwrap_err();
    assert_eq!((e.key_name(), e.line()), (Some("limits.http-timeout"), Some(3)), "{e}");
    let e = Policy::builder().http_request_body(2 << 40).build().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("limits.http-request-body must be between 0 B and 1 TiB"),
        "{e}"
    );
    let (code, stderr) = wasmcell(&["run", "--http-response-body", "2TiB", "nothing.wasm"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--http-response-body: limits.http-response-body must be between"),
        "{stderr}"
    );
    let (code, stderr) = wasmcell(&["run", "--http-timeout", "soon", "nothing.wasm"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("'--http-timeout <DURATION>'"), "{stderr}");
}

/// `limits.http-requests` from a file, a flag and the builder, checked
/// alike, and described.
#[test]
fn limits_http_requests_is_a_setting_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let p = Policy::from_file(write(dir.path(), "h.toml", "[limits]\nhttp-requests = 5\n")).unwrap();
    assert_eq!(p.limits().http_requests.value, 5);
    assert_eq!(Policy::deny_all().limits().http_requests.value, 1000);
    let described = wasmcell::policy::summarize(&p);
    assert!(described.contains("  http-requests: 5 per run (from "), "{described}");
    let e = Policy::from_file(write(
        dir.path(),
        "big.toml",
        "[limits]\n\nhttp-requests = 2_000_000_000\n",
    ))
    .unwrap_err();
    assert_eq!((e.key_name(), e.line()), (Some("limits.http-requests"), Some(3)), "{e}");
    let e = Policy::builder().http_requests(u64::MAX).build().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("limits.http-requests must be between 0 and 1000000000"),
        "{e}"
    );
    assert_eq!(
        Policy::builder()
            .http_requests(0)
            .build()
            .unwrap()
            .limits()
            .http_requests
            .value,
        0
    );
    let (code, stderr) = wasmcell(&["run", "--http-requests", "2000000000", "nothing.wasm"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--http-requests: limits.http-requests must be between 0 and 1000000000"),
        "{stderr}"
    );
    let (code, stderr) = wasmcell(&["run", "--http-requests", "many", "nothing.wasm"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("'--http-requests <N>'"), "{stderr}");
}

#[test]
fn unknown_key_in_nested_table_names_line_and_expected_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let path = write(
        dir.path(),
        "typo.toml",
        "[limits]\nfuel = 10\n\n[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\nacess = \"read-only\"\n",
    );
    let e = Policy::from_file(&path).unwrap_err();
    assert!(matches!(e.kind(), PolicyErrorKind::Parse(_)), "{e:?}");
    assert_eq!(e.path(), Some(path.as_path()));
    assert_eq!(e.line(), Some(7));
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("{}:7: ", path.display())), "{msg}");
    assert!(msg.contains("unknown key `acess` in [fs.dirs]"), "{msg}");
    let expected = msg.split_once("; expected").map(|(_, rest)| rest).unwrap_or_default();
    for key in ["host", "guest", "access"] {
        assert!(expected.contains(key), "expected keys missing from: {msg}");
    }

    let path = write(
        dir.path(),
        "clocks.toml",
        "[clocks]\nmode = \"host\"\nresolutoin = \"1ms\"\n",
    );
    let msg = Policy::from_file(&path).unwrap_err().to_string();
    assert!(msg.starts_with(&format!("{}:3: ", path.display())), "{msg}");
    assert!(msg.contains("in [clocks]") && msg.contains("resolution"), "{msg}");
}

#[test]
fn bad_size_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "size.toml",
        "# limits for tests\n[limits]\nfuel = 5\nmemory = \"12 parsecs\"\n",
    );
    let e = Policy::from_file(&path).unwrap_err();
    assert_eq!(e.line(), Some(4));
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("{}:4: ", path.display())), "{msg}");
    assert!(msg.contains("parsecs") && msg.contains("MiB"), "{msg}");
}

#[test]
fn extends_cycle_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.toml", "extends = [\"b.toml\"]\n");
    write(dir.path(), "b.toml", "extends = [\"c.toml\"]\n");
    write(dir.path(), "c.toml", "extends = [\"a.toml\"]\n");
    let e = Policy::from_file(&a).unwrap_err();
    match e.kind() {
        PolicyErrorKind::Cycle(chain) => {
            assert!(chain.len() >= 4, "a -> b -> c -> a: {chain:?}");
            assert_eq!(chain.first(), chain.last(), "{chain:?}");
        }
        other => panic!("expected a cycle, got {other:?}: {e}"),
    }
    assert!(e.to_string().contains("cycle"), "{e}");

    let selfish = write(dir.path(), "self.toml", "extends = [\"self.toml\"]\n");
    assert!(matches!(
        Policy::from_file(&selfish).unwrap_err().kind(),
        PolicyErrorKind::Cycle(_)
    ));
}

#[test]
fn missing_extends_file_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "lost.toml",
        "# builds on a file that is not there\n\nextends = [\"nowhere.toml\"]\n",
    );
    let e = Policy::from_file(&path).unwrap_err();
    assert_eq!(e.line(), Some(3), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("{}:3: ", path.display())), "{msg}");
    assert!(msg.contains("nowhere.toml"), "{msg}");
}

// ---------------------------------------------------------------------------
// Hostile policy files: a policy may come from an untrusted repository, so
// loading one must end, quickly, in a policy or an error (exit 2).
// ---------------------------------------------------------------------------

/// Runs `wasmcell ARGS..` under the suite's watchdog: a loader that blocks
/// fails the test instead of hanging it.
fn wasmcell(args: &[&str]) -> (Option<i32>, String) {
    let out = crate::wait_for(crate::wasmcell_command().args(args).spawn().expect("spawn wasmcell"));
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

// See: #9
#[test]
fn deep_extends_chain_is_refused_at_the_cap() {
    // 3,000 files, each extending the next: without a cap the loader recursed
    // once per file and overflowed its stack (an abort, not an error).
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3000 {
        write(
            dir.path(),
            &format!("p{i}.toml"),
            &format!("extends = [\"p{}.toml\"]\n", i + 1),
        );
    }
    write(dir.path(), "p3000.toml", "");
    let top = dir.path().join("p0.toml");
    let (code, err) = wasmcell(&["check", s(&top)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("more than 32 files deep") && err.contains("p0.toml"),
        "{err}"
    );
    assert!(
        err.contains("p32.toml:1:"),
        "the error names the file at the cap: {err}"
    );
    assert!(!err.contains("overflow"), "{err}");

    // At the cap exactly: 32 links below the first file load.
    write(dir.path(), "p32.toml", "");
    assert!(Policy::from_file(&top).is_ok());
    write(dir.path(), "p32.toml", "extends = [\"p33.toml\"]\n");
    write(dir.path(), "p33.toml", "");
    let e = Policy::from_file(&top).unwrap_err();
    assert_eq!(e.key_name(), Some("extends"), "{e}");
    assert_eq!(e.path(), Some(dir.path().join("p32.toml").as_path()), "{e}");
}

// See: #9
#[test]
fn repeated_extends_load_each_file_once() {
    // 32 levels (the most `extends` allows), each extending the one below
    // twice: 2^32 loads when each `extends` entry was loaded afresh (hours),
    // 33 files read with the fix.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write(
        dir.path(),
        "l32.toml",
        "[limits]\nfuel = 10\n[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"read-only\"\n[net]\ntcp-connect = [\"127.0.0.1:80\"]\n",
    );
    for i in 0..32 {
        write(
            dir.path(),
            &format!("l{i}.toml"),
            &format!("extends = [\"l{n}.toml\", \"l{n}.toml\"]\n", n = i + 1),
        );
    }
    let top = dir.path().join("l0.toml");
    let (code, err) = wasmcell(&["check", s(&top)]);
    assert_eq!(code, Some(0), "{err}");
    let policy = Policy::from_file(&top).unwrap();
    assert_eq!(policy.limits().fuel.value, Some(10));
    assert_eq!(policy.dirs().len(), 1);
    assert_eq!(
        policy.net().tcp_connect.len(),
        1,
        "an entry reached 2^32 times is kept once"
    );
    assert_eq!(
        policy.extends().len(),
        32,
        "each file is listed once: {:?}",
        policy.extends()
    );
}

// See: #9
#[test]
fn diamond_applies_the_shared_base_where_each_parent_names_it() {
    // top extends [left, right]; both extend base. Merging is unchanged by
    // loading base once: right's layer still carries base's settings, which
    // land over left's, exactly as when base was read twice.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let grant = |access: &str| format!("[[fs.dirs]]\nhost = \"data\"\nguest = \"/data\"\naccess = \"{access}\"\n");
    write(
        dir.path(),
        "base.toml",
        &format!("[limits]\nfuel = 10\n{}", grant("read-only")),
    );
    write(
        dir.path(),
        "left.toml",
        &format!("extends = [\"base.toml\"]\n[limits]\nfuel = 5\n{}", grant("read-write")),
    );
    write(dir.path(), "right.toml", "extends = [\"base.toml\"]\n");
    let top = write(dir.path(), "top.toml", "extends = [\"left.toml\", \"right.toml\"]\n");
    let policy = Policy::from_file(&top).unwrap();
    assert_eq!(
        policy.limits().fuel.value,
        Some(10),
        "base, through right, wins over left"
    );
    assert_eq!(policy.dirs().len(), 1);
    assert_eq!(policy.dirs()[0].access, Access::ReadOnly);
    let names: Vec<_> = policy
        .extends()
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["base.toml", "left.toml", "right.toml"]);
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(s(path)).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

// See: #9
#[test]
fn fifo_policy_is_refused_without_blocking() {
    // Opening a FIFO for reading waits for a writer that never comes; the
    // watchdog in `wasmcell` fails the test if the loader blocks.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("policy.fifo");
    mkfifo(&fifo);
    let (code, err) = wasmcell(&["check", s(&fifo)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("FIFO") && err.contains("regular file"), "{err}");

    let top = write(dir.path(), "top.toml", "\nextends = [\"policy.fifo\"]\n");
    let (code, err) = wasmcell(&["run", "--policy", s(&top), wasmcell_artifacts::HELLO]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("top.toml:2:") && err.contains("FIFO"), "{err}");
}

// See: #9
#[test]
fn device_policy_is_refused_before_reading() {
    // `/dev/zero` never ends: read whole, it took memory until the host ran
    // out. A symlink to it, in a directory the author controls, is the same.
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("innocent.toml");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let extends = write(dir.path(), "top.toml", "extends = [\"/dev/zero\"]\n");
    let via_link = write(dir.path(), "linked.toml", "extends = [\"innocent.toml\"]\n");
    for path in [Path::new("/dev/zero"), &link, &extends, &via_link] {
        let (code, err) = wasmcell(&["check", s(path)]);
        assert_eq!(code, Some(2), "{}: {err}", path.display());
        assert!(err.contains("character device"), "{}: {err}", path.display());
    }
    // A directory is no policy either.
    let (code, err) = wasmcell(&["check", s(dir.path())]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("a directory, not a regular file"), "{err}");
}

// See: #9
#[test]
fn oversized_policy_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = write(dir.path(), "big.toml", &format!("# {}\n", "x".repeat(1 << 20)));
    let e = Policy::from_file(&big).unwrap_err();
    assert!(e.to_string().contains("1 MiB"), "{e}");
    // Just under the cap loads.
    let fits = write(dir.path(), "fits.toml", &format!("# {}\n", "x".repeat((1 << 20) - 3)));
    assert!(Policy::from_file(&fits).is_ok());
}

// See: #9
#[test]
fn clock_start_past_what_wasi_can_show_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "future.toml",
        "[clocks]\nmode = \"frozen\"\nstart = \"2600-01-01T00:00:00Z\"\n",
    );
    let (code, err) = wasmcell(&["check", s(&path)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("future.toml:3:") && err.contains("clocks.start") && err.contains("2554"),
        "{err}"
    );
}

// See: #9
#[test]
fn bad_size_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "lots.toml", "[limits]\nmemory = \"lots\"\n");
    let (code, err) = wasmcell(&["check", s(&path)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("lots.toml:2: limits.memory: invalid size `lots`"), "{err}");
}

/// Rule patterns and `hide` are checked when the policy loads, naming the
/// key, the line and the fix; a grant repeated through `extends` keeps the
/// rules of every layer.
#[test]
fn fs_rules_are_checked_and_merged() {
    let dir = tempfile::tempdir().unwrap();
    let grant = "[[fs.dirs]]\nhost = \".\"\nguest = \"/w\"\naccess = \"read-write\"\n";
    let e = Policy::from_toml(&format!("{grant}deny = [\"ok\", \"/etc/passwd\"]\n"), dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":5:") && e.contains("fs.dirs.deny") && e.contains("absolute"),
        "{e}"
    );
    let e = Policy::from_toml(&format!("{grant}read-only = [\"a/**b\"]\n"), dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("fs.dirs.read-only") && e.contains("must stand alone"), "{e}");
    let e = Policy::from_toml(&format!("{grant}hide = true\n"), dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("hides nothing"), "{e}");

    std::fs::write(
        dir.path().join("base.toml"),
        format!("{grant}deny = [\"**/.env\"]\nhide = true\n"),
    )
    .unwrap();
    let top = format!("extends = [\"base.toml\"]\n{grant}read-only = [\"config/**\"]\n");
    let policy = Policy::from_toml(&top, dir.path()).unwrap();
    let [d] = policy.dirs() else {
        panic!("{:?}", policy.dirs())
    };
    let names = |g: &[wasmcell::policy::PathGlob]| g.iter().map(|g| g.as_str().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&d.rules.deny), ["**/.env"]);
    assert_eq!(names(&d.rules.read_only), ["config/**"]);
    assert!(d.rules.hide);
}

/// `quota` and `max-files` belong on read-write grants, and are described.
#[test]
fn fs_quotas_need_a_read_write_grant() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[[fs.dirs]]\nhost = \".\"\nguest = \"/w\"\naccess = \"read-only\"\nquota = \"1 MiB\"\n";
    let e = Policy::from_toml(text, dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("fs.dirs.quota") && e.contains("read-only grant") && e.contains(":5:"),
        "{e}"
    );
    let text =
        "[[fs.dirs]]\nhost = \".\"\nguest = \"/w\"\naccess = \"read-write\"\nquota = \"1 MiB\"\nmax-files = 10\n";
    let policy = Policy::from_toml(text, dir.path()).unwrap();
    assert_eq!(
        (policy.dirs()[0].rules.quota, policy.dirs()[0].rules.max_files),
        (Some(1 << 20), Some(10))
    );
    let described = wasmcell::policy::summarize(&policy);
    assert!(
        described.contains("quota: the run may add at most 1 MiB"),
        "{described}"
    );
    assert!(described.contains("at most 10 new files"), "{described}");
}

/// A grant with rules may not overlap another grant: the other one would be
/// a way around them.
#[test]
fn fs_rules_refuse_overlapping_grants() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("inner")).unwrap();
    let text = "[[fs.dirs]]\nhost = \".\"\nguest = \"/all\"\naccess = \"read-only\"\n\
                [[fs.dirs]]\nhost = \"inner\"\nguest = \"/w\"\naccess = \"read-write\"\ndeny = [\"**/.env\"]\n";
    let e = Policy::from_toml(text, dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("overlap") && e.contains("`/w`") && e.contains("deny or read-only rules"),
        "{e}"
    );
}

/// `[[fs.files]]` names an existing file, at any guest name; its folder may
/// not also be a directory grant.
#[test]
fn fs_file_grants_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.conf"), "x").unwrap();
    let entry = |host: &str, guest: &str| {
        format!("[[fs.files]]\nhost = \"{host}\"\nguest = \"{guest}\"\naccess = \"read-only\"\n")
    };
    let err = |text: &str| Policy::from_toml(text, dir.path()).unwrap_err().to_string();
    // Each error points at the key it is about: `host` on line 2, `guest` on
    // line 3, whatever words the paths hold.
    let line = |text: &str| Policy::from_toml(text, dir.path()).unwrap_err().line();
    assert_eq!(line(&entry("missing.conf", "/etc/missing.conf")), Some(2));
    assert_eq!(line(&entry("guest.conf", "/etc/guest.conf")), Some(2));
    assert_eq!(line(&entry("app.conf", "etc")), Some(3));
    assert!(err(&entry("missing.conf", "/etc/missing.conf")).contains("not an existing regular file"));
    assert!(err(&entry(".", "/etc/x")).contains("not an existing regular file"));
    assert!(err(&entry("app.conf", "app.conf")).contains("absolute path naming a file"));
    let both =
        entry("app.conf", "/etc/app.conf") + "[[fs.dirs]]\nhost = \".\"\nguest = \"/etc\"\naccess = \"read-only\"\n";
    assert!(err(&both).contains("both a granted directory and the folder of a [[fs.files]] grant"));
    let policy = Policy::from_toml(&entry("app.conf", "/etc/other.conf"), dir.path()).unwrap();
    let described = wasmcell::policy::summarize(&policy);
    let host = dir.path().canonicalize().unwrap().join("app.conf");
    assert!(
        described.contains(&format!("host file {} -> /etc/other.conf", host.display()))
            && described.contains("nothing else of"),
        "{described}"
    );
}

/// File grants under other names that the guest could not tell apart are
/// refused at the line that adds the second: one guest name for two host
/// files, or one host file under two names in one guest folder; files of two
/// host folders in one guest folder need two guest folders. Distinct files
/// of one folder, even swapping names, are fine.
#[test]
fn fs_file_grants_that_cannot_be_told_apart_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("other")).unwrap();
    for file in ["one.conf", "two.conf", "other/three.conf"] {
        std::fs::write(dir.path().join(file), "x").unwrap();
    }
    let entry = |host: &str, guest: &str| {
        format!("[[fs.files]]\nhost = \"{host}\"\nguest = \"{guest}\"\naccess = \"read-only\"\n")
    };
    let refused = |text: String, says: &str| {
        let e = Policy::from_toml(&text, dir.path()).unwrap_err();
        assert_eq!((e.line(), e.key_name()), (Some(6), Some("fs.files")), "{e}");
        assert!(e.to_string().contains(says), "{e}");
    };
    refused(
        entry("one.conf", "/etc/app.conf") + &entry("two.conf", "/etc/app.conf"),
        "guest name `app.conf` is given to two host files, `one.conf` and `two.conf`; give each its own guest name",
    );
    refused(
        entry("one.conf", "/etc/a.conf") + &entry("one.conf", "/etc/b.conf"),
        "host file `one.conf` is granted twice in one guest folder, as `a.conf` and `b.conf`",
    );
    refused(
        entry("one.conf", "/etc/a.conf") + &entry("other/three.conf", "/etc/b.conf"),
        "files from two host folders need two guest folders",
    );
    let swap = entry("one.conf", "/etc/two.conf") + &entry("two.conf", "/etc/one.conf");
    Policy::from_toml(&swap, dir.path()).unwrap();
    let twice = entry("one.conf", "/etc/a.conf") + &entry("one.conf", "/etc/a.conf");
    Policy::from_toml(&twice, dir.path()).unwrap();
}

/// A file grant's guest path is normalized (no empty, `.` or `..`
/// components), and a read-only file grant inside a read-write directory
/// grant is refused like any read-only grant reachable through a writable one.
#[test]
fn fs_file_grants_cannot_be_reached_around() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.conf"), "x").unwrap();
    let entry =
        |guest: &str| format!("[[fs.files]]\nhost = \"app.conf\"\nguest = \"{guest}\"\naccess = \"read-only\"\n");
    for guest in ["/etc//app.conf", "/etc/./app.conf", "/etc/../app.conf"] {
        let e = Policy::from_toml(&entry(guest), dir.path()).unwrap_err().to_string();
        assert!(e.contains("absolute path naming a file"), "{guest}: {e}");
    }
    let both = entry("/etc/app.conf") + "[[fs.dirs]]\nhost = \".\"\nguest = \"/w\"\naccess = \"read-write\"\n";
    let e = Policy::from_toml(&both, dir.path()).unwrap_err();
    assert!(
        matches!(e.kind(), wasmcell::PolicyErrorKind::OverlappingGrants { .. }),
        "{e}"
    );
}

/// A workspace `ws` with `secret.txt`, `notes.txt`, `config/app.toml` and
/// `keys/id.key`, and `base.toml` granting it read-write at `/w` with
/// `rules` (TOML lines).
fn ruled_base(dir: &Path, rules: &str) -> PathBuf {
    let ws = dir.join("ws");
    std::fs::create_dir_all(ws.join("config")).unwrap();
    std::fs::create_dir_all(ws.join("keys")).unwrap();
    for file in ["secret.txt", "notes.txt", "config/app.toml", "keys/id.key"] {
        std::fs::write(ws.join(file), "x").unwrap();
    }
    write(
        dir,
        "base.toml",
        &format!("[[fs.dirs]]\nhost = \"ws\"\nguest = \"/w\"\naccess = \"read-write\"\n{rules}"),
    )
}

/// `child.toml`: extends `base.toml` and grants the file `ws/FILE` at
/// `/etc/NAME` with `access`; the grant's `host` is on line 3.
fn file_grant_child(dir: &Path, file: &str, access: &str) -> PathBuf {
    let name = Path::new(file).file_name().unwrap().to_str().unwrap();
    write(
        dir,
        "child.toml",
        &format!(
            "extends = [\"base.toml\"]\n[[fs.files]]\nhost = \"ws/{file}\"\nguest = \"/etc/{name}\"\naccess = \"{access}\"\n"
        ),
    )
}

// See: #20
/// A base policy's `deny` (hidden or not) and `read-only` rules hold
/// against a file grant a later layer adds for the same file: an extending
/// file's `[[fs.files]]`, or `--file`/`--ro-file`. The policy is refused,
/// naming both places; a file the rules leave alone may still be granted.
#[test]
fn a_file_grant_cannot_undo_a_base_policys_rules() {
    let rules = "deny = [\"secret.txt\", \"keys\"]\nread-only = [\"config/**\"]\nhide = true\n";
    let refused = [
        ("secret.txt", "read-write", "deny \"secret.txt\""),
        ("secret.txt", "read-only", "deny \"secret.txt\""),
        ("keys/id.key", "read-only", "deny \"keys\""),
        ("config/app.toml", "read-write", "read-only \"config/**\""),
    ];
    for (file, access, rule) in refused {
        let dir = tempfile::tempdir().unwrap();
        let base = ruled_base(dir.path(), rules);
        let child = file_grant_child(dir.path(), file, access);
        let e = Policy::from_file(&child).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e.kind(), PolicyErrorKind::Invalid(_)), "{file}: {msg}");
        assert_eq!(
            (e.path(), e.line(), e.key_name()),
            (Some(child.as_path()), Some(3), Some("fs.files")),
            "{msg}"
        );
        for needle in [
            rule,
            &format!("{}:2", base.display()),
            &format!("{}:3", child.display()),
            "`/w`",
        ] {
            assert!(msg.contains(needle), "{file}: `{needle}` missing from {msg}");
        }

        // The same grant as a flag over the base.
        let flag = if access == "read-write" { "--file" } else { "--ro-file" };
        let access = if access == "read-write" {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        let e = Policy::builder()
            .file(&base)
            .unwrap()
            .with_origin(Origin::Flag(flag), |b| {
                b.grant_file(dir.path().join("ws").join(file), &format!("/etc/{name}"), access)
            })
            .build()
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("{flag}: ")), "{msg}");
        assert!(
            msg.contains(rule) && msg.contains(&format!("{}:2", base.display())),
            "{msg}"
        );
    }
    // What the rules leave alone can be granted.
    let dir = tempfile::tempdir().unwrap();
    ruled_base(dir.path(), rules);
    let child = file_grant_child(dir.path(), "notes.txt", "read-write");
    Policy::from_file(&child).unwrap_or_else(|e| panic!("{e}"));
}

// See: #20
/// The rule wins whichever layer comes first: a child that adds a `deny`
/// over a file its base grants is refused too, and so is one file holding
/// both (a contradiction).
#[test]
fn a_deny_added_over_a_granted_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    ruled_base(dir.path(), "");
    let files = write(
        dir.path(),
        "files.toml",
        "[[fs.files]]\nhost = \"ws/secret.txt\"\nguest = \"/etc/secret.txt\"\naccess = \"read-write\"\n",
    );
    let child = write(
        dir.path(),
        "child.toml",
        "extends = [\"files.toml\"]\n[[fs.dirs]]\nhost = \"ws\"\nguest = \"/w\"\naccess = \"read-write\"\ndeny = [\"*.txt\"]\n",
    );
    let e = Policy::from_file(&child).unwrap_err();
    let msg = e.to_string();
    assert_eq!((e.path(), e.line()), (Some(child.as_path()), Some(3)), "{msg}");
    assert!(
        msg.contains(&format!("{}:2", files.display())) && msg.contains("deny \"*.txt\""),
        "{msg}"
    );

    let both = "[[fs.dirs]]\nhost = \"ws\"\nguest = \"/w\"\naccess = \"read-write\"\ndeny = [\"secret.txt\"]\n\
                [[fs.files]]\nhost = \"ws/secret.txt\"\nguest = \"/etc/secret.txt\"\naccess = \"read-only\"\n";
    let e = Policy::from_toml(both, dir.path()).unwrap_err().to_string();
    assert!(e.contains("deny \"secret.txt\""), "{e}");
}

// See: #20
/// On the command line: `wasmcell run` and `wasmcell check` refuse the
/// policy with exit 2 before anything runs.
#[test]
fn cli_refuses_a_file_grant_of_a_denied_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = ruled_base(dir.path(), "deny = [\"secret.txt\"]\n");
    let child = file_grant_child(dir.path(), "secret.txt", "read-write");
    let (code, stderr) = wasmcell(&["check", s(&child)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("deny \"secret.txt\""), "{stderr}");
    let grant = format!("{}::/etc/secret.txt", s(&dir.path().join("ws/secret.txt")));
    let (code, stderr) = wasmcell(&["run", "--policy", s(&base), "--file", &grant, wasmcell_artifacts::HELLO]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--file") && stderr.contains(&format!("{}:2", base.display())),
        "{stderr}"
    );
}

// See: #20
/// A write quota counts what is written through its own grant, so no other
/// grant that can write the same tree is allowed beside it, whichever layer
/// adds it: the same folder at another guest path, a folder inside it, a
/// read-write file grant of a file in it, or a child policy's grant. Each
/// is refused before the guest runs, and nothing lands in the folder.
#[test]
fn a_later_grant_cannot_write_around_a_quota() {
    let dir = tempfile::tempdir().unwrap();
    let base = ruled_base(dir.path(), "quota = \"100 B\"\nmax-files = 2\n");
    let ws = dir.path().join("ws");
    let big = "x".repeat(5000);
    let around = [
        ("--dir", format!("{}::/x", s(&ws)), "/x/big.txt"),
        ("--dir", format!("{}::/x", s(&ws.join("config"))), "/x/big.txt"),
        (
            "--file",
            format!("{}::/x/notes.txt", s(&ws.join("notes.txt"))),
            "/x/notes.txt",
        ),
    ];
    for flags @ (flag, grant, target) in &around {
        let write = format!("write:{target}:{big}");
        let args = [
            "run",
            "--policy",
            s(&base),
            flag,
            grant,
            wasmcell_artifacts::FS_OPS,
            &write,
        ];
        let (code, stderr) = wasmcell(&args);
        assert_eq!(code, Some(2), "{flags:?} must be refused: {stderr}");
        assert!(stderr.contains("write quota"), "{flags:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{}:2", base.display())),
            "names the quota grant: {stderr}"
        );
    }
    let child = write(
        dir.path(),
        "child.toml",
        "extends = [\"base.toml\"]\n[[fs.dirs]]\nhost = \"ws\"\nguest = \"/x\"\naccess = \"read-write\"\n",
    );
    let (code, stderr) = wasmcell(&["check", s(&child)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("write quota") && stderr.contains("child.toml:3"),
        "{stderr}"
    );
    for entry in std::fs::read_dir(ws.join("config"))
        .unwrap()
        .chain(std::fs::read_dir(&ws).unwrap())
    {
        let meta = entry.unwrap().metadata().unwrap();
        assert!(meta.len() <= 1 || meta.is_dir(), "a refused run wrote nothing");
    }
}

/// `fs.cwd` is refused at load, at its line, unless it is an absolute guest path inside a grant
/// where the guest may read, and the environment sets no other `PWD`; each message says what to
/// do. Accepted, it becomes `PWD` in the guest's environment.
#[test]
fn fs_cwd_must_lie_where_the_guest_may_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ws")).unwrap();
    std::fs::write(dir.path().join("app.conf"), "x").unwrap();
    let data = "[[fs.dirs]]\nhost = \"ws\"\nguest = \"/data\"\naccess = \"read-only\"\n";
    let ruled = |hide: bool| {
        format!(
            "[[fs.dirs]]\nhost = \"ws\"\nguest = \"/data\"\naccess = \"read-only\"\ndeny = [\"secret\"]\nhide = {hide}\n"
        )
    };
    let file = "[[fs.files]]\nhost = \"app.conf\"\nguest = \"/etc/app.conf\"\naccess = \"read-only\"\n";
    let cwd = |path: &str| format!("[fs]\ncwd = \"{path}\"\n");
    let refused = [
        (
            cwd("/elsewhere") + data,
            "is not inside a granted directory (`/data`); choose a path inside one",
        ),
        (cwd("/data"), "none is granted"),
        (
            cwd("/data/secret/deeper") + &ruled(false),
            "is denied to the guest by deny \"secret\" in the grant at `/data`",
        ),
        (
            cwd("/data/secret") + &ruled(true),
            "is hidden to the guest by deny \"secret\"",
        ),
        (cwd("/etc/app.conf") + file, "the folder of [[fs.files]] grants"),
        (cwd("data") + data, "must be an absolute guest path"),
        (cwd("/data/../etc") + data, "must not contain `.` or `..`"),
        (
            cwd("/data") + data + "[env]\nvars = { PWD = \"/other\" }\n",
            "env.vars sets PWD to `/other`",
        ),
        (
            cwd("/data") + data + "[env]\ninherit = [\"PWD\"]\n",
            "remove PWD from env.inherit",
        ),
    ];
    for (text, why) in refused {
        let e = Policy::from_toml(&text, dir.path()).expect_err(&text);
        let msg = e.to_string();
        assert!(msg.contains(why), "{text}: {msg}");
        assert!(msg.contains("fs.cwd"), "{text}: {msg}");
        assert_eq!((e.key_name(), e.line()), (Some("fs.cwd"), Some(2)), "{text}: {msg}");
    }
    for (text, expected) in [
        (cwd("/data/") + data, "/data"),
        (cwd("/data/not/yet/made") + data, "/data/not/yet/made"),
        (cwd("/data/open") + &ruled(true), "/data/open"),
        (cwd("/etc") + file, "/etc"),
        (cwd("/data") + data + "[env]\nvars = { PWD = \"/data\" }\n", "/data"),
    ] {
        let p = Policy::from_toml(&text, dir.path()).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(p.cwd(), Some(expected), "{text}");
        assert_eq!(p.env_vars()["PWD"], expected, "{text}");
        let described = wasmcell::policy::summarize(&p);
        assert!(
            described.contains(&format!("working directory: {expected}")),
            "{described}"
        );
    }
    // A later layer's value wins, and a refused one names the flag that set it.
    let base = Policy::builder().toml(&(cwd("/nowhere") + data), dir.path()).unwrap();
    let p = base
        .with_origin(Origin::Flag("--cwd"), |b| b.cwd("/data"))
        .build()
        .unwrap();
    assert_eq!(p.cwd(), Some("/data"));
    let e = Policy::builder()
        .grant_dir(dir.path(), "/data", Access::ReadOnly)
        .with_origin(Origin::Flag("--cwd"), |b| b.cwd("/tmp"))
        .build()
        .unwrap_err();
    assert!(e.to_string().starts_with("--cwd: fs.cwd `/tmp` is not inside"), "{e}");
}

/// A read-write file grant is read as well as written behind the second
/// wall (`--wall require`): the wall's rule for the file gives it reading.
#[test]
fn a_read_write_file_grant_is_readable_behind_the_wall() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.txt"), "one").unwrap();
    let grant = format!("{}::/etc/state.txt", s(&dir.path().join("state.txt")));
    for module in [wasmcell_artifacts::FS_OPS, wasmcell_artifacts::FS_OPS_COMPONENT] {
        let out = crate::wait_for(
            crate::wasmcell_command()
                .args(["run", "--wall", "require", "--file", &grant, module])
                .args(["read:/etc/state.txt", "write:/etc/state.txt:two", "read:/etc/state.txt"])
                .spawn()
                .expect("spawn wasmcell"),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            stdout, "read:/etc/state.txt -> ok: one\nwrite:/etc/state.txt:two -> ok\nread:/etc/state.txt -> ok: two\n",
            "{module}"
        );
        std::fs::write(dir.path().join("state.txt"), "one").unwrap();
    }
}

/// On the command line, `--ro-file conf/one.conf::/etc/app.conf` (a path
/// relative to the working directory) shows the file as `/etc/app.conf`
/// only, `wasmcell check` shows which host file stands behind the guest
/// name, and two files under one guest name are refused naming the flag.
#[test]
fn cli_grants_a_file_under_another_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(dir.path().join("conf/one.conf"), "port = 1\n").unwrap();
    std::fs::write(dir.path().join("conf/two.conf"), "port = 2\n").unwrap();
    let in_dir = |args: &[&str]| {
        let cmd = crate::wasmcell_command().current_dir(dir.path()).args(args).spawn();
        crate::wait_for(cmd.expect("spawn wasmcell"))
    };
    let grant = "conf/one.conf::/etc/app.conf";
    let out = in_dir(&["run", "--ro-file", grant, wasmcell_artifacts::FS_READ, "/etc/app.conf"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "port = 1\n");
    let out = in_dir(&["run", "--ro-file", grant, wasmcell_artifacts::FS_READ, "/etc/one.conf"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: NotFound"));

    let policy = dir.path().join("p.toml");
    let entry = "[[fs.files]]\nhost = \"conf/one.conf\"\nguest = \"/etc/app.conf\"\naccess = \"read-only\"\n";
    std::fs::write(&policy, entry).unwrap();
    let out = in_dir(&["check", s(&policy)]);
    let host = dir.path().canonicalize().unwrap().join("conf/one.conf");
    let described = String::from_utf8_lossy(&out.stdout);
    assert!(
        described.contains(&format!("host file {} -> /etc/app.conf (read-only", host.display())),
        "{described}"
    );

    let (two, one) = ("conf/two.conf::/etc/app.conf", "conf/one.conf::/etc/app.conf");
    let out = in_dir(&["run", "--ro-file", one, "--ro-file", two, wasmcell_artifacts::HELLO]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--ro-file") && stderr.contains("guest name `app.conf` is given to two host files"),
        "{stderr}"
    );
}
