//! Real programs from package registries, run the way a user would run them:
//! under a tight policy that grants only what each needs, with what it was
//! not granted refused, and stopped by the limits. `scripts/corpus` fetches
//! each at a pinned version, checks its SHA-256 (or builds it with
//! `cargo install --locked`), and caches it under the target directory; a
//! registry that cannot be reached fails these tests, never skips them.
//!
//! - `ripgrep` 14.1.1, built from the crates registry's source for wasm32-wasip1;
//! - `yosys` 0.70 (YoWASP's build, C++ with Wasm exception handling, 65.7 MiB);
//! - `ruby` 3.4 with its standard library (a reactor, 29.2 MiB);
//! - `quickjs-transform`, quickjs-rs's JavaScript transform plugin (a reactor).

use crate::{WATCHDOG, assert_status, policy_toml, stdout, wait_for, wasmcell_command};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use wasmcell::{Sandbox, Status};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The corpus program `name`, fetched (or built) and verified by
/// `scripts/corpus`, once per test process.
pub fn corpus(name: &str) -> PathBuf {
    static FETCHED: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut fetched = FETCHED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(path) = fetched.get(name) {
        return path.clone();
    }
    // Beside the build's other outputs, wherever the target directory is.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("corpus");
    let out = Command::new("python3")
        .arg(Path::new(REPO).join("scripts/corpus"))
        .args(["path", name])
        .env("WASMCELL_CORPUS_DIR", &dir)
        .output()
        .expect("run python3 scripts/corpus");
    assert!(
        out.status.success(),
        "fetching the corpus program `{name}` failed; the corpus needs the package registries \
         (pip, npm, cargo) and does not skip without them:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim_end());
    fetched.insert(name.to_string(), path.clone());
    path
}

/// A tree of text files for ripgrep to search, and a secret beside it that
/// no policy grants.
fn search_tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("nested")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha\nthe needle is here\nomega\n").unwrap();
    std::fs::write(src.join("nested/b.txt"), "another needle\n").unwrap();
    std::fs::write(src.join("c.txt"), "nothing to see\n").unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "needle outside the grant\n").unwrap();
    tmp
}

/// ripgrep's grant: the tree, read-only, at `/src`; nothing else.
fn ripgrep_policy(tmp: &Path, extra: &str) -> wasmcell::Policy {
    policy_toml(
        &format!(
            "extends = [\"{REPO}/policies/tight.toml\"]\n\
             [[fs.dirs]]\nhost = \"src\"\nguest = \"/src\"\naccess = \"read-only\"\n{extra}"
        ),
        tmp,
    )
}

fn run_ripgrep(policy: wasmcell::Policy, args: &[&str]) -> wasmcell::Outcome {
    let rg = corpus("ripgrep");
    Sandbox::builder()
        .policy(policy)
        .build()
        .unwrap()
        .run(&rg, args)
        .unwrap_or_else(|e| panic!("running ripgrep failed: {e:#}"))
}

// See: #13
#[test]
fn r13_corpus_ripgrep_searches_what_the_policy_grants() {
    let tmp = search_tree();
    let outcome = run_ripgrep(ripgrep_policy(tmp.path(), ""), &["--sort", "path", "-n", "needle", "/src"]);
    assert_status(&outcome, Status::Exited(0));
    assert_eq!(
        stdout(&outcome),
        "/src/a.txt:2:the needle is here\n/src/nested/b.txt:1:another needle\n"
    );
}

// See: #13
#[test]
fn r13_corpus_ripgrep_cannot_reach_past_its_grant() {
    let tmp = search_tree();
    let secret = tmp.path().join("secret.txt");
    for target in ["/src/../secret.txt", "/secret.txt", secret.to_str().unwrap(), "/etc/passwd", "/"] {
        let outcome = run_ripgrep(ripgrep_policy(tmp.path(), ""), &["needle", target]);
        assert_status(&outcome, Status::Exited(2));
        assert!(!stdout(&outcome).contains("outside"), "{target}: {}", stdout(&outcome));
    }
    // Following a link the tree holds does not lead out either.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&secret, tmp.path().join("src/link.txt")).unwrap();
        let outcome = run_ripgrep(ripgrep_policy(tmp.path(), ""), &["--follow", "-c", "needle", "/src"]);
        assert!(!stdout(&outcome).contains("link.txt"), "{}", stdout(&outcome));
    }
}

// See: #13
#[test]
fn r13_corpus_ripgrep_is_stopped_by_fuel_and_memory_limits() {
    let tmp = search_tree();
    let starved = run_ripgrep(ripgrep_policy(tmp.path(), "[limits]\nfuel = 10_000"), &["needle", "/src"]);
    assert_status(&starved, Status::FuelExhausted);
    let cramped = run_ripgrep(
        ripgrep_policy(tmp.path(), "[limits]\nmemory = \"256 KiB\""),
        &["needle", "/src"],
    );
    assert_status(&cramped, Status::MemoryLimit);
}

// See: #13
#[test]
fn r13_corpus_ripgrep_runs_from_the_command_line() {
    let tmp = search_tree();
    let rg = corpus("ripgrep");
    let child = wasmcell_command()
        .args(["run", "--ro-dir"])
        .arg(format!("{}::/src", tmp.path().join("src").display()))
        .args(["--timeout", "20s", "--fuel", "500000000"])
        .arg(&rg)
        .args(["-c", "needle", "/src/a.txt"])
        .spawn()
        .unwrap();
    let out = wait_for(child);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    let _ = WATCHDOG;
}

// See: #13
/// The project matrix covers a real-world module: every cell of ripgrep under
/// every bundled policy is checked by `policies/expectations.toml`.
#[test]
fn r13_corpus_ripgrep_is_in_the_project_matrix() {
    let rg = corpus("ripgrep");
    let child = wasmcell_command()
        .args(["matrix", "--modules"])
        .arg(&rg)
        .arg("--policies")
        .arg(Path::new(REPO).join("policies"))
        .spawn()
        .unwrap();
    let out = wait_for(child);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" 0 mismatched, 0 unchecked"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("rg ")), "{stdout}");
}
