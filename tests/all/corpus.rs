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

use crate::{assert_status, policy_toml, stdout, wait_for, wasmcell_command};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use wasmcell::{Sandbox, Status};

// The repository: these tests belong to the command line's package, in cli/.
const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

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
fn corpus_ripgrep_searches_what_the_policy_grants() {
    let tmp = search_tree();
    let outcome = run_ripgrep(
        ripgrep_policy(tmp.path(), ""),
        &["--sort", "path", "-n", "needle", "/src"],
    );
    assert_status(&outcome, Status::Exited(0));
    assert_eq!(
        stdout(&outcome),
        "/src/a.txt:2:the needle is here\n/src/nested/b.txt:1:another needle\n"
    );
}

// See: #13
#[test]
fn corpus_ripgrep_cannot_reach_past_its_grant() {
    let tmp = search_tree();
    let secret = tmp.path().join("secret.txt");
    for target in [
        "/src/../secret.txt",
        "/secret.txt",
        secret.to_str().unwrap(),
        "/etc/passwd",
        "/",
    ] {
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

// See: #25
/// ripgrep reads its flags from the file `RIPGREP_CONFIG_PATH` names: a
/// team's `conf/team-rg.conf`, granted read-only as `/etc/ripgreprc`, is
/// read under that name, while the host folder's other files stay hidden
/// (a config naming one of them is not found).
#[test]
fn corpus_ripgrep_reads_its_config_granted_under_another_name() {
    let tmp = search_tree();
    let conf = tmp.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("team-rg.conf"), "--sort=path\n--replace=FOUND\n").unwrap();
    std::fs::write(conf.join("other.conf"), "--count\n").unwrap();
    let grant = |guest: &str| {
        format!(
            "[[fs.files]]\nhost = \"conf/team-rg.conf\"\nguest = \"/etc/ripgreprc\"\naccess = \"read-only\"\n\
             [env.vars]\nRIPGREP_CONFIG_PATH = \"{guest}\"\n"
        )
    };
    let outcome = run_ripgrep(
        ripgrep_policy(tmp.path(), &grant("/etc/ripgreprc")),
        &["needle", "/src"],
    );
    assert_status(&outcome, Status::Exited(0));
    assert_eq!(
        stdout(&outcome),
        "/src/a.txt:the FOUND is here\n/src/nested/b.txt:another FOUND\n"
    );
    // The host's names are not there: ripgrep reports the config missing and
    // searches with its defaults.
    for hidden in ["/etc/team-rg.conf", "/etc/other.conf"] {
        let outcome = run_ripgrep(
            ripgrep_policy(tmp.path(), &grant(hidden)),
            &["-c", "needle", "/src/a.txt"],
        );
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(stdout(&outcome), "1\n", "{hidden}");
        let stderr = String::from_utf8_lossy(&outcome.stderr);
        assert!(stderr.contains("No such file or directory"), "{hidden}: {stderr}");
    }
}

// See: #13
#[test]
fn corpus_ripgrep_is_stopped_by_fuel_and_memory_limits() {
    let tmp = search_tree();
    let starved = run_ripgrep(
        ripgrep_policy(tmp.path(), "[limits]\nfuel = 10_000"),
        &["needle", "/src"],
    );
    assert_status(&starved, Status::FuelExhausted);
    let cramped = run_ripgrep(
        ripgrep_policy(tmp.path(), "[limits]\nmemory = \"256 KiB\""),
        &["needle", "/src"],
    );
    assert_status(&cramped, Status::MemoryLimit);
}

// See: #13
#[test]
fn corpus_ripgrep_runs_from_the_command_line() {
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
}

// See: #13
/// The project matrix covers a real-world module: every cell of ripgrep under
/// every bundled policy is checked by `policies/expectations.toml`.
#[test]
fn corpus_ripgrep_is_in_the_project_matrix() {
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
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 mismatched, 0 unchecked"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("rg ")), "{stdout}");
}

// ---------------------------------------------------------------------------
// Reactors: CRuby 3.4 (what the 30 MB reactor is) and quickjs-rs's
// transform plugin, driven through `--invoke` and `Instance`.
// ---------------------------------------------------------------------------

// See: #13
/// A 29 MiB reactor run as a command is refused before anything compiles,
/// saying what it is and how to call it.
#[test]
fn corpus_ruby_reactor_is_refused_before_compiling() {
    let ruby = corpus("ruby");
    let sandbox = Sandbox::builder().policy(wasmcell::Policy::deny_all()).build().unwrap();
    let before = sandbox.engine().cache_stats().compiled;
    let Err(err) = sandbox.load(&ruby) else {
        panic!("a reactor loaded as a command")
    };
    assert!(matches!(err.kind(), wasmcell::LoadErrorKind::NotCommand(_)), "{err:#}");
    assert_eq!(sandbox.engine().cache_stats().compiled, before, "nothing was compiled");

    let out = wait_for(wasmcell_command().arg("run").arg(&ruby).spawn().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{stderr}");
    assert!(
        stderr.contains("reactor exporting") && stderr.contains("--invoke"),
        "{stderr}"
    );
}

/// quickjs-rs's transform plugin: a reactor that imports only WASI.
fn quickjs() -> PathBuf {
    corpus("quickjs-transform")
}

// See: #13
#[test]
fn corpus_quickjs_plugin_is_invoked_from_the_command_line() {
    let out = wait_for(
        wasmcell_command()
            .args([
                "run",
                "--fuel",
                "1000000",
                "--memory",
                "16MiB",
                "--invoke",
                "qjst_alloc",
            ])
            .arg(quickjs())
            .arg("64")
            .spawn()
            .unwrap(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let pointer: u32 = stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a pointer, not {stdout:?}"));
    assert_ne!(pointer, 0);
}

// See: #13
/// One instance, many calls: the plugin's heap persists between them, each
/// call has its own fuel, and a call past the memory limit ends with it.
#[test]
fn corpus_quickjs_plugin_keeps_its_heap_between_calls_under_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = policy_toml("[limits]\nfuel = 1_000_000\nmemory = \"16 MiB\"", tmp.path());
    let sandbox = Sandbox::builder().policy(policy).build().unwrap();
    let program = sandbox.load_library(quickjs()).unwrap();
    let mut instance = sandbox.instantiate(&program).unwrap();
    let mut alloc = |n: &str| {
        let call = instance.invoke("qjst_alloc", &[n]).unwrap();
        assert_status(&call.outcome, Status::Exited(0));
        call.results.unwrap()[0].clone()
    };
    let (first, second) = (alloc("64"), alloc("64"));
    assert_ne!(first, second, "the first block is still allocated");
    for _ in 0..50 {
        // 50 calls of a fresh 1,000,000 units each: more than one budget in all.
        alloc("1024");
    }
    let call = instance.invoke("qjst_alloc", &["100000000"]).unwrap();
    assert_status(&call.outcome, Status::MemoryLimit);
    assert!(instance.poisoned().is_some());
    assert!(
        instance.invoke("qjst_alloc", &["8"]).is_err(),
        "a poisoned instance runs nothing more"
    );

    let starved = policy_toml("[limits]\nfuel = 20", tmp.path());
    let sandbox = Sandbox::builder().policy(starved).build().unwrap();
    let program = sandbox.load_library(quickjs()).unwrap();
    let call = sandbox
        .instantiate(&program)
        .unwrap()
        .invoke("qjst_alloc", &["100"])
        .unwrap();
    assert_status(&call.outcome, Status::FuelExhausted);
}

// ---------------------------------------------------------------------------
// Yosys 0.70: a 65.7 MiB C++ command built by wasi-sdk 33, using Wasm
// exception handling. It compiles once per test run (a minute or more), into
// the tests' compile cache, so every test here uses the command line with one
// engine configuration (no fuel metering) and waits for the first.
// ---------------------------------------------------------------------------

/// A counter in Verilog for yosys to read.
const COUNTER_V: &str =
    "module counter(input clk, output reg [3:0] q);\n  always @(posedge clk) q <= q + 1;\nendmodule\n";

/// `wasmcell run --wasm exceptions` on yosys with `flags` before the module
/// and `args` after it. The first call compiles yosys; the others wait for it.
fn yosys(flags: &[&str], args: &[&str]) -> std::process::Output {
    static FIRST: Mutex<()> = Mutex::new(());
    let _one_at_a_time = FIRST.lock().unwrap_or_else(|e| e.into_inner());
    let yosys = corpus("yosys");
    let child = wasmcell_command()
        .args(["run", "--wasm", "exceptions", "--max-module-size", "80MiB"])
        .args(flags)
        .arg(&yosys)
        .args(args)
        .spawn()
        .unwrap();
    crate::wait_for_with(child, std::time::Duration::from_secs(1200))
}

/// A folder holding the design, and a secret beside it.
fn design() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("work")).unwrap();
    std::fs::write(tmp.path().join("work/counter.v"), COUNTER_V).unwrap();
    std::fs::write(tmp.path().join("secret.v"), COUNTER_V.replace("counter", "secret")).unwrap();
    tmp
}

fn grant(tmp: &Path) -> String {
    format!("{}::/work", tmp.join("work").display())
}

// See: #13
#[test]
fn corpus_yosys_synthesizes_a_granted_design() {
    let tmp = design();
    let out = yosys(
        &["--ro-dir", &grant(tmp.path()), "--timeout", "120s", "--memory", "1GiB"],
        &["-p", "read_verilog /work/counter.v; proc; opt; stat"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The counter is one adder and one register.
    assert!(stdout.contains("=== counter ==="), "{stdout}");
    assert!(stdout.contains("$add") && stdout.contains("$dff"), "{stdout}");
}

// See: #13
#[test]
fn corpus_yosys_cannot_read_past_its_grant() {
    let tmp = design();
    let secret = tmp.path().join("secret.v");
    for target in ["/work/../secret.v", "/etc/passwd", secret.to_str().unwrap()] {
        let out = yosys(
            &["--ro-dir", &grant(tmp.path()), "--timeout", "120s"],
            &["-q", "-p", &format!("read_verilog {target}")],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_ne!(out.status.code(), Some(0), "{target}: {stdout}");
        assert!(!stdout.contains("secret"), "{target}: {stdout}");
    }
}

// See: #13
#[test]
fn corpus_yosys_is_stopped_by_memory_and_time_limits() {
    let tmp = design();
    let out = yosys(&["--memory", "8MiB"], &["-V"]);
    assert_eq!(out.status.code(), Some(137), "{}", String::from_utf8_lossy(&out.stderr));
    // A script that reads the design 100,000 times: far longer than 2 seconds.
    let script = "read_verilog /work/counter.v\ndesign -reset\n".repeat(100_000);
    std::fs::write(tmp.path().join("work/forever.ys"), script).unwrap();
    let out = yosys(
        &["--ro-dir", &grant(tmp.path()), "--timeout", "2s"],
        &["-q", "-s", "/work/forever.ys"],
    );
    assert_eq!(out.status.code(), Some(124), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The README's "Learn a policy" walk-through, step by step: ripgrep learns
/// a policy pinned to itself that grants the project read-only with what it
/// never touched denied and hidden; a second use merges in; under the
/// learned policy alone the secret beside the code is refused and named.
#[test]
fn corpus_ripgrep_learns_a_minimal_pinned_policy() {
    let rg = corpus("ripgrep");
    let rg = rg.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("project/src")).unwrap();
    std::fs::create_dir_all(dir.join("project/docs")).unwrap();
    std::fs::write(dir.join("project/src/main.rs"), "// TODO: parse flags\n").unwrap();
    std::fs::write(dir.join("project/docs/notes.md"), "# Notes\n").unwrap();
    std::fs::write(dir.join("project/.env"), "API_KEY=abc\n").unwrap();
    let wasmcell = |args: &[&str]| {
        let mut cmd = wasmcell_command();
        cmd.current_dir(dir).args(args);
        wait_for(cmd.spawn().unwrap())
    };
    let shown = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    let grant = ["--ro-dir", "project::/project"];
    let out = wasmcell(
        &[
            &["learn", "--output", "rg.toml"][..],
            &grant,
            &[rg, "--no-config", "-n", "TODO", "/project/src"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/project/src/main.rs:1:// TODO: parse flags\n"
    );
    assert!(shown(&out).contains("the learned policy runs it the same way (exited, exit code 0) with nothing refused"));
    let learned = std::fs::read_to_string(dir.join("rg.toml")).unwrap();
    assert!(
        learned.contains("host = \"project\"\nguest = \"/project\"\naccess = \"read-only\"\ndeny = [\".env\", \"docs\"]\nhide = true\n"),
        "{learned}"
    );
    let digest = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(rg).unwrap())
    );
    assert!(learned.contains(&format!("sha256 = [\"{digest}\"]")), "{learned}");

    let out = wasmcell(
        &[
            &["learn", "--output", "rg.toml", "--merge", "rg.toml"][..],
            &grant,
            &[rg, "--no-config", "-l", "Notes", "/project/docs"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    let learned = std::fs::read_to_string(dir.join("rg.toml")).unwrap();
    assert!(learned.contains("deny = [\".env\"]\nhide = true\n"), "{learned}");

    // Both uses run under it alone; the secret is refused, named, and absent.
    for args in [["-n", "TODO", "/project/src"], ["-l", "Notes", "/project/docs"]] {
        let out = wasmcell(&[&["run", "--policy", "rg.toml", rg, "--no-config"][..], &args].concat());
        assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    }
    let out = wasmcell(&[
        "run",
        "-v",
        "--policy",
        "rg.toml",
        rg,
        "--no-config",
        "TODO",
        "/project/.env",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    assert!(
        shown(&out).contains("wasmcell: denied fs-read /project/.env: deny \".env\" in the grant at /project"),
        "{}",
        shown(&out)
    );
    assert!(shown(&out).contains("No such file or directory"), "{}", shown(&out));
}
