//! Policy files: every bundled policy in `policies/` loads and says what it
//! grants, the bundled read-only policy works with a real guest, and broken
//! files are reported with their file and line.

use crate::{assert_status, both, run, stdout};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use wasmcell::{Access, Clocks, Origin, Policy, PolicyErrorKind, Status};

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
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
            let description = policy.describe();
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

#[test]
fn deny_all_grants_nothing() {
    let p = bundled("deny-all.toml");
    assert!(p.dirs().is_empty());
    assert!(p.env_vars().is_empty());
    assert!(p.env_inherit().is_empty());
    assert!(p.guest_env().is_empty());
    assert_eq!(p.limits.fuel.value, None);
    // The file spells out the built-in defaults, so it equals the built-in
    // policy in everything but where each value came from.
    let builtin = Policy::deny_all();
    assert_eq!(p.limits.memory.value, builtin.limits.memory.value);
    assert_eq!(p.limits.timeout.value, builtin.limits.timeout.value);
    assert_eq!(p.limits.stack.value, builtin.limits.stack.value);
    assert_eq!(p.limits.output.value, builtin.limits.output.value);
    assert_eq!(p.limits.module_size.value, builtin.limits.module_size.value);
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
    assert_eq!(
        p.limits.memory.origin,
        Origin::File(p.extends()[0].clone()),
        "limits come from the file it extends"
    );
    assert_eq!(p.env_vars().get("LANG").map(String::as_str), Some("C.UTF-8"));
}

#[test]
fn scratch_grants_data_and_scratch() {
    let p = bundled("scratch.toml");
    let dirs: Vec<(&str, Access)> = p.dirs().iter().map(|d| (d.guest.as_str(), d.access)).collect();
    assert_eq!(dirs, [("/data", Access::ReadOnly), ("/scratch", Access::ReadWrite)]);
    assert_eq!(p.dirs()[1].host, policies_dir().join("scratch").canonicalize().unwrap());
    assert_eq!(p.limits.timeout.value, Duration::from_secs(30));
}

#[test]
fn deterministic_freezes_clocks_and_seeds_randomness() {
    let p = bundled("deterministic.toml");
    let y2k = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800);
    assert_eq!(p.clocks(), &Clocks::Frozen { start: y2k });
    assert_eq!(p.seed(), Some(42));
    assert!(p.limits.fuel.value.is_some());
}

#[test]
fn tight_has_small_budgets() {
    let p = bundled("tight.toml");
    assert_eq!(p.limits.fuel.value, Some(50_000_000));
    assert_eq!(p.limits.memory.value, 16 << 20);
    assert_eq!(p.limits.timeout.value, Duration::from_secs(2));
    assert_eq!(p.limits.output.value, 64 << 10);
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
