//! `wasmcell matrix` end to end: the bundled expectations hold over the bundled
//! policies, a wrong expectation or a widened policy fails loudly with a command
//! that reproduces the cell, unchecked cells never pass, and bad input exits 2.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use wasmcell::matrix::{CellResult, Matrix, MatrixOptions, Verdict, render_json, render_junit, render_table};
use wasmcell_artifacts::{
    CLOCKS_NOW, ENV_ARGS, ENV_VARS, EXIT_CODE, EXIT_PANIC, FS_ESCAPE_ABSOLUTE, FS_ESCAPE_DOTDOT, FS_ESCAPE_SYMLINK,
    FS_READ, FS_READONLY_LINK_RENAME, FS_READONLY_WRITE, FS_WRITE, HELLO, LIMITS_DEEP_RECURSION, LIMITS_FD_EXHAUSTION,
    LIMITS_MEMORY_BOMB, LIMITS_OUTPUT_FLOOD, NET_TCP_CONNECT, RANDOM_BYTES, STDIO_ECHO, STDIO_STDIN_BLOCKED,
};

const BIN: &str = env!("CARGO_BIN_EXE_wasmcell");
/// The project's own policies and expectations.
const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");
const EXPECTATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/expectations.toml");
const DENY_ALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/deny-all.toml");
const READ_ONLY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/read-only.toml");
const TIGHT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/tight.toml");

/// Every bundled guest that ends quickly under every bundled policy; the
/// infinite loop and the sleeper run into 10-30 s timeouts, so CI runs them.
#[rustfmt::skip]
const FAST: &[&str] = &[
    HELLO, FS_READ, FS_WRITE, FS_READONLY_WRITE, FS_READONLY_LINK_RENAME, FS_ESCAPE_DOTDOT, FS_ESCAPE_ABSOLUTE,
    FS_ESCAPE_SYMLINK, ENV_VARS, ENV_ARGS, EXIT_CODE, EXIT_PANIC, STDIO_ECHO, STDIO_STDIN_BLOCKED, CLOCKS_NOW,
    RANDOM_BYTES, LIMITS_MEMORY_BOMB, LIMITS_OUTPUT_FLOOD, LIMITS_FD_EXHAUSTION, LIMITS_DEEP_RECURSION, NET_TCP_CONNECT,
];

fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

fn stem(path: &str) -> String {
    Path::new(path).file_stem().unwrap().to_string_lossy().into_owned()
}

/// How `wasmcell matrix` ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// The policies `policies/` holds (every `.toml` but the expectations), by name, sorted.
fn bundled_policy_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(POLICIES)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| p.file_name().is_some_and(|n| n != wasmcell::matrix::EXPECTATIONS_FILE))
        .map(|p| stem(s(&p)))
        .collect();
    names.sort();
    names
}

/// How many policies `policies/` holds.
fn bundled_policy_count() -> usize {
    bundled_policy_names().len()
}

/// Runs `wasmcell matrix --modules MODULES.. --policies POLICIES.. ARGS..` with stdin closed.
fn matrix(modules: &[&str], policies: &[&str], args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .arg("matrix")
        .arg("--modules")
        .args(modules)
        .arg("--policies")
        .args(policies)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn wasmcell");
    Run {
        code: out.status.code().expect("wasmcell exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A matrix that must be refused: exit 2, no panic. Returns stderr.
#[track_caller]
fn refused(modules: &[&str], policies: &[&str], args: &[&str]) -> String {
    let run = matrix(modules, policies, args);
    assert_eq!(run.code, 2, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "nothing may run: {}", run.stdout);
    run.stderr
}

/// Runs a cell's `reproduce:` command through `sh`, with this build's binary.
fn reproduce(command: &str) -> std::process::Output {
    let command = command.replacen("wasmcell run ", &format!("'{BIN}' run "), 1);
    Command::new("sh").args(["-c", &command]).output().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// An expectations file holding `text`, in a fresh tempdir.
fn expectations(text: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "e.toml", text);
    (tmp, path)
}

/// Every file under `dir` with its content, keyed by relative path.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// policies/expectations.toml holds for every fast guest under every bundled policy, in a full grid.
#[test]
fn bundled_expectations_hold() {
    let run = matrix(FAST, &[POLICIES], &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let mut policies: Vec<String> = std::fs::read_dir(POLICIES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && !p.ends_with("expectations.toml"))
        .map(|p| stem(s(&p)))
        .collect();
    policies.sort();
    let mut lines = run.stdout.lines();
    let header: Vec<String> = lines.next().unwrap().split_whitespace().map(String::from).collect();
    assert_eq!(header[0], "module");
    assert_eq!(header[1..], policies, "a column per policy");
    let rows: Vec<&str> = lines.take_while(|l| !l.is_empty()).collect();
    let mut modules: Vec<String> = FAST.iter().map(|m| stem(m)).collect();
    let mut row_names: Vec<String> = rows.iter().map(|r| stem(r.split(' ').next().unwrap())).collect();
    modules.sort();
    row_names.sort();
    assert_eq!(row_names, modules, "a row per module");
    for row in rows {
        assert_eq!(row.matches('✓').count(), policies.len(), "every cell matched: {row}");
    }
    let cells = FAST.len() * policies.len();
    let summary = format!("{cells} cells: {cells} matched, 0 mismatched, 0 unchecked");
    assert!(run.stdout.contains(&summary), "{}", run.stdout);
}

/// A wrong expectation turns its cell red, names expected vs actual, and the reproduce line reruns it.
#[test]
fn wrong_expectation_fails_with_a_reproducible_mismatch() {
    let original = std::fs::read_to_string(EXPECTATIONS).unwrap();
    let cell = "module = \"fs_read\"\npolicy = \"read-only\"\nexit-code = 0";
    assert!(
        original.contains(cell),
        "expectations.toml lost the fs_read/read-only cell"
    );
    let (_tmp, wrong) = expectations(&original.replace(cell, &cell.replace("= 0", "= 1")));

    let run = matrix(&[FS_READ, HELLO], &[POLICIES], &["--expect", s(&wrong)]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.matches('✗').count(), 1, "{}", run.stdout);
    let mismatches = &run.stdout[run.stdout.find("\nmismatches:\n").expect("a mismatches section")..];
    assert!(
        mismatches.contains("  fs_read under read-only: got 0\n"),
        "{mismatches}"
    );
    assert!(
        mismatches.contains("    exit code: expected 1, got 0\n"),
        "{mismatches}"
    );
    let command = mismatches
        .lines()
        .find_map(|l| l.trim().strip_prefix("reproduce: "))
        .expect("a reproduce line");
    assert!(command.starts_with("wasmcell run --policy "), "{command}");
    assert!(command.ends_with("fs_read.wasm /data/hello.txt"), "{command}");

    let out = reproduce(command);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, std::fs::read(format!("{POLICIES}/data/hello.txt")).unwrap());
}

/// A cell's reproduce command feeds the guest the stdin the cell had, whatever the policy's stdin.
#[test]
fn reproduce_feeds_the_same_stdin() {
    let (_tmp, expect) = expectations("[[module]]\nname = \"stdio_echo\"\nstdin = \"piped in\\n\"\n");
    let run = matrix(
        &[STDIO_ECHO],
        &[DENY_ALL],
        &["--expect", s(&expect), "--format", "json"],
    );
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    let cell = &json["cells"][0];
    assert_eq!(
        cell["outcome"]["stdout_bytes"], 9,
        "the cell echoed its stdin: {cell:#}"
    );
    let out = reproduce(cell["reproduce"].as_str().unwrap());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "piped in\n",
        "{}",
        cell["reproduce"]
    );
}

/// A `[[cell]]` that expects nothing checks nothing, so it must not count its cells as matched.
#[test]
fn expectation_without_keys_is_not_a_match() {
    let (_tmp, expect) = expectations("[[cell]]\nmodule = \"*\"\npolicy = \"*\"\n");
    let run = matrix(&[EXIT_PANIC], &[DENY_ALL], &["--expect", s(&expect)]);
    let unchecked = run.code == 0 && run.stdout.contains("1 cells: 0 matched, 0 mismatched, 1 unchecked");
    assert!(run.code == 2 || unchecked, "{}{}", run.stdout, run.stderr);
}

/// Granting /data read-write under the read-only policy's name is caught: fs_readonly_write stops matching.
#[test]
fn widened_policy_fails_and_the_real_data_is_untouched() {
    let real = Path::new(POLICIES).join("data");
    let before = tree(&real);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for (rel, content) in &before {
        std::fs::create_dir_all(data.join(rel).parent().unwrap()).unwrap();
        std::fs::write(data.join(rel), content).unwrap();
    }
    let widened = format!(
        "[[fs.dirs]]\nhost = {:?}\nguest = \"/data\"\naccess = \"read-write\"\n\n[env]\nvars = {{ LANG = \"C.UTF-8\" }}\n",
        s(&data)
    );
    let policy = write(tmp.path(), "read-only.toml", &widened);

    let run = matrix(
        &[FS_READONLY_WRITE, FS_READ],
        &[s(&policy)],
        &["--expect", EXPECTATIONS],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let row = |m: &str| run.stdout.lines().find(|l| l.starts_with(m)).unwrap().to_string();
    assert!(row("fs_read ").contains("0 ✓"), "reading still works: {}", run.stdout);
    assert!(row("fs_readonly_write ").contains("134 ✗"), "{}", run.stdout);
    let mismatch = "fs_readonly_write under read-only: got 134\n    exit code: expected 0, got 134\n";
    assert!(run.stdout.contains(mismatch), "{}", run.stdout);
    assert!(
        data.join("new.txt").exists(),
        "the widened grant really allowed a write"
    );
    assert_eq!(tree(&real), before, "policies/data must be unchanged");
}

/// With no expectation a cell is `?`, counted as unchecked and never as matched.
#[test]
fn unchecked_cells_never_pass() {
    let (_tmp, empty) = expectations("");
    let run = matrix(&[HELLO, EXIT_CODE], &[DENY_ALL, TIGHT], &["--expect", s(&empty)]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let rows: Vec<&str> = run.stdout.lines().skip(1).take(2).collect();
    assert!(rows.iter().all(|r| r.matches(" ?").count() == 2), "{}", run.stdout);
    assert!(!run.stdout.contains('✓') && !run.stdout.contains('✗'), "{}", run.stdout);
    let summary = "4 cells: 0 matched, 0 mismatched, 4 unchecked\n";
    assert!(run.stdout.contains(summary), "{}", run.stdout);

    let run = matrix(
        &[HELLO, EXIT_CODE],
        &[DENY_ALL, TIGHT],
        &["--expect", s(&empty), "--format", "json"],
    );
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    let cells = json["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4);
    assert!(cells.iter().all(|c| c["verdict"] == "unchecked"), "{json:#}");
}

/// `--format json` reports the summary, the axes and every cell's outcome.
#[test]
fn json_report() {
    let run = matrix(&[HELLO, FS_READ, EXIT_CODE], &[POLICIES], &["--format", "json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    let cells = 3 * bundled_policy_count();
    let summary = serde_json::json!({"cells": cells, "matched": cells, "mismatched": 0, "unchecked": 0});
    assert_eq!(json["summary"], summary);
    assert_eq!(json["modules"], serde_json::json!(["hello", "fs_read", "exit_code"]));
    assert_eq!(json["policies"].as_array().unwrap().len(), bundled_policy_count());
    let cells = json["cells"].as_array().unwrap();
    let cell = |m: &str, p: &str| cells.iter().find(|c| c["module"] == m && c["policy"] == p).unwrap();
    assert_eq!(cell("exit_code", "tight")["outcome"]["status"], "exited");
    assert_eq!(cell("exit_code", "tight")["outcome"]["exit_code"], 7);
    assert_eq!(cell("fs_read", "deny-all")["outcome"]["exit_code"], 1);
    assert_eq!(cell("fs_read", "read-only")["verdict"], "match");
}

/// `--format junit --output FILE` writes a test case per cell and a summary line to stderr.
#[test]
fn junit_report() {
    let (tmp, expect) = expectations(
        "[[cell]]\nmodule = \"hello\"\npolicy = \"*\"\nexit-code = 0\n\n\
         [[cell]]\nmodule = \"fs_read\"\npolicy = \"deny-all\"\nexit-code = 0\n",
    );
    let xml = tmp.path().join("matrix.xml");
    let args = ["--expect", s(&expect), "--format", "junit", "--output", s(&xml)];
    let run = matrix(&[HELLO, FS_READ], &[DENY_ALL, READ_ONLY], &args);
    assert_eq!(run.code, 1, "fs_read under deny-all exits 1: {}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let summary = format!(
        "wasmcell matrix: 2 matched, 1 mismatched, 1 unchecked; report in {}\n",
        s(&xml)
    );
    assert_eq!(run.stderr.lines().next().unwrap(), summary.trim_end());
    assert!(
        run.stderr.lines().nth(1).unwrap().starts_with("wall: "),
        "{}",
        run.stderr
    );
    let xml = std::fs::read_to_string(&xml).unwrap();
    assert_eq!(
        xml.matches("<property name=\"wall\"").count(),
        4,
        "each cell's wall: {xml}"
    );
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 4, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    assert_eq!(xml.matches("<skipped ").count(), 1, "{xml}");
    assert!(xml.contains("exit code: expected 0, got 1"), "{xml}");
}

/// A filter keeps only the cells it names, and `jobs = 1` reaches the same verdicts as the default.
#[test]
fn filter_and_jobs() {
    let run = |filter: Option<&str>, jobs: usize| {
        let options = MatrixOptions {
            modules: [HELLO, FS_READ, FS_WRITE, EXIT_CODE].map(PathBuf::from).to_vec(),
            policies: vec![PathBuf::from(POLICIES)],
            filter: filter.map(String::from),
            jobs,
            ..MatrixOptions::default()
        };
        Matrix::run(&options).unwrap()
    };
    let cells = |m: &Matrix| {
        m.cells
            .iter()
            .map(|c| (c.module.clone(), c.policy.clone()))
            .collect::<Vec<_>>()
    };
    let policies = bundled_policy_names();
    let fs = run(Some("fs_*"), 0);
    assert_eq!(fs.modules, ["fs_read", "fs_write"]);
    assert_eq!(fs.policies, policies);
    let grid: Vec<_> = ["fs_read", "fs_write"]
        .iter()
        .flat_map(|m| policies.iter().map(move |p| (m.to_string(), p.clone())))
        .collect();
    assert_eq!(
        cells(&fs),
        grid,
        "every fs_ module under every policy, row by row, and nothing else"
    );
    let one = run(Some("hello/tight"), 0);
    assert_eq!(
        (&one.modules[..], &one.policies[..]),
        (&["hello".to_string()][..], &["tight".to_string()][..])
    );
    assert_eq!(cells(&one), [("hello".to_string(), "tight".to_string())]);
    // A filter naming a policy keeps that column only; `*` crosses the `/`.
    let column = run(Some("*/read-only"), 0);
    assert_eq!(column.policies, ["read-only"]);
    let expected: Vec<_> = ["hello", "fs_read", "fs_write", "exit_code"]
        .iter()
        .map(|m| (m.to_string(), "read-only".to_string()))
        .collect();
    assert_eq!(cells(&column), expected);

    let verdicts = |m: &Matrix| {
        let cells = m.cells.iter();
        cells
            .map(|c| (c.module.clone(), c.policy.clone(), c.verdict.clone()))
            .collect::<Vec<_>>()
    };
    let (serial, parallel) = (run(None, 1), run(None, 0));
    assert_eq!(verdicts(&serial), verdicts(&parallel));
    assert!(serial.cells.iter().all(|c| c.verdict == Verdict::Match));
    let reports = [
        render_table(&serial, false),
        render_json(&serial),
        render_junit(&serial),
    ];
    assert!(reports.iter().all(|r| r.contains("fs_write")));
}

/// Missing or empty module paths exit 2 and say what is missing.
#[test]
fn missing_modules_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.wasm");
    let msg = refused(&[s(&missing)], &[DENY_ALL], &[]);
    assert!(msg.contains(&format!("`{}` does not exist", s(&missing))), "{msg}");
    write(tmp.path(), "notes.txt", "not a module");
    let msg = refused(&[s(tmp.path())], &[DENY_ALL], &[]);
    assert!(msg.contains("no modules (wasm, wat) found in"), "{msg}");
}

/// Invalid expectations exit 2 naming `file:line`: unknown key, unknown status, bad regex.
#[test]
fn invalid_expectations_are_refused() {
    for (line, want) in [
        ("exit = 1", "unknown field `exit`"),
        (
            "status = \"crashed\"",
            "unknown status `crashed`; expected one of exited",
        ),
        ("stdout-matches = \"(\"", "invalid regular expression"),
    ] {
        let (_tmp, e) = expectations(&format!("[[cell]]\nmodule = \"*\"\npolicy = \"*\"\n{line}\n"));
        let msg = refused(&[HELLO], &[DENY_ALL], &["--expect", s(&e)]);
        let at = format!("{}:4: ", s(&e));
        assert!(msg.contains(&at) && msg.contains(want), "{line}: {msg}");
    }
}

/// Two modules with the same name, a filter matching nothing and an invalid policy exit 2.
#[test]
fn ambiguous_or_invalid_input_is_refused() {
    let msg = refused(&[HELLO, HELLO], &[DENY_ALL], &[]);
    assert!(msg.contains("two modules are named `hello`"), "{msg}");
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&a, &b] {
        std::fs::create_dir(dir).unwrap();
        std::fs::copy(HELLO, dir.join("hello.wasm")).unwrap();
    }
    let msg = refused(&[s(&a), s(&b)], &[DENY_ALL], &[]);
    assert!(msg.contains("two modules are named `hello`"), "{msg}");

    let msg = refused(&[HELLO], &[DENY_ALL], &["--filter", "nothing/*"]);
    assert!(msg.contains("the filter matches no cell"), "{msg}");

    let dir = tmp.path().join("policies");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(DENY_ALL, dir.join("deny-all.toml")).unwrap();
    let bad = write(&dir, "bad.toml", "# a typo\n\n[limits]\nfule = 10\n");
    let msg = refused(&[HELLO], &[s(&dir)], &[]);
    assert!(msg.contains(&format!("{}:4: ", s(&bad))), "{msg}");
}

/// A module that cannot load shows `load` in its cells and matches `status = "load-error"`.
#[test]
fn unloadable_module_is_a_load_error_cell() {
    let (tmp, expect) =
        expectations("[[cell]]\nmodule = \"junk\"\npolicy = \"*\"\nstatus = \"load-error\"\nexit-code = 126\n");
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let junk: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(tmp.path().join("junk.wasm"), junk).unwrap();
    let junk = tmp.path().join("junk.wasm");
    let run = matrix(&[s(&junk), HELLO], &[DENY_ALL, TIGHT], &["--expect", s(&expect)]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let row = run.stdout.lines().find(|l| l.starts_with("junk ")).unwrap();
    assert_eq!(row.matches("load ✓").count(), 2, "{}", run.stdout);
    assert!(
        run.stdout.contains("4 cells: 2 matched, 0 mismatched, 2 unchecked"),
        "{}",
        run.stdout
    );

    let options = MatrixOptions {
        modules: vec![junk],
        policies: vec![PathBuf::from(DENY_ALL)],
        expect: Some(expect),
        ..MatrixOptions::default()
    };
    let matrix = Matrix::run(&options).unwrap();
    assert!(matches!(&matrix.cells[0].result, CellResult::LoadFailed(e) if e.contains("junk.wasm")));
    assert_eq!(matrix.cells[0].verdict, Verdict::Match);
}

/// By default each cell runs in its own worker process; `--in-process` runs
/// them here, reaches the same verdicts, and says the second wall is off.
#[test]
fn workers_and_in_process_reach_the_same_verdicts() {
    let cells = |args: &[&str]| -> Vec<Value> {
        let run = matrix(FAST, &[DENY_ALL, READ_ONLY, TIGHT], args);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        let json: Value = serde_json::from_str(&run.stdout).unwrap();
        json["cells"].as_array().unwrap().clone()
    };
    let workers = cells(&["--format", "json", "--expect", EXPECTATIONS]);
    let here = cells(&["--format", "json", "--expect", EXPECTATIONS, "--in-process"]);
    assert_eq!(workers.len(), FAST.len() * 3);
    assert_eq!(workers.len(), here.len());
    let key = |c: &Value| {
        let o = &c["outcome"];
        (
            c["module"].clone(),
            c["policy"].clone(),
            c["status"].clone(),
            c["verdict"].clone(),
            o["exit_code"].clone(),
        )
    };
    for (w, h) in workers.iter().zip(&here) {
        assert_eq!(key(w), key(h));
        assert!(
            w["outcome"]["wall"].is_object(),
            "a worker's cell carries its wall: {w}"
        );
        assert!(h["outcome"]["wall"].is_null(), "{h}");
        assert_eq!(w["reproduce"], h["reproduce"]);
    }

    let table = matrix(&[HELLO], &[DENY_ALL], &["--in-process"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table
            .stdout
            .contains("\nwall: off (cells ran inside this process, not each in a confined worker)\n"),
        "{}",
        table.stdout
    );
    let table = matrix(&[HELLO], &[DENY_ALL], &[]);
    assert!(table.stdout.contains("\nwall: "), "{}", table.stdout);
    assert!(!table.stdout.contains("wall: off"), "{}", table.stdout);
}

/// `wall-stopped` is a status an expectation may name, like any other.
#[test]
fn expectations_may_name_the_wall_stopped_status() {
    let (_tmp, expect) = expectations("[[cell]]\nmodule = \"hello\"\npolicy = \"*\"\nstatus = \"wall-stopped\"\n");
    let run = matrix(&[HELLO], &[DENY_ALL], &["--expect", s(&expect)]);
    assert_eq!(run.code, 1, "a mismatch, not bad input: {}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("status: expected wall-stopped, got exited"),
        "{}",
        run.stdout
    );
}

/// The matrix loads through the same import check as `run`: under a policy
/// that refuses unknown imports the cell is a load error naming the import;
/// under one that traps them the guest runs and ends as a trap naming it,
/// in this process and in the cells' worker processes.
// See: #25
#[test]
fn unknown_imports_follow_each_cells_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let guest = tmp.path().join("calls.wasm");
    let wat = r#"(module (import "host" "call" (func $call)) (memory (export "memory") 1)
        (func (export "_start") (call $call)))"#;
    std::fs::write(&guest, wat::parse_str(wat).unwrap()).unwrap();
    let trap = write(tmp.path(), "trap.toml", "[wasm]\nunknown-imports = \"trap\"\n");
    let options = MatrixOptions {
        modules: vec![guest.clone()],
        policies: vec![PathBuf::from(DENY_ALL), trap.clone()],
        ..MatrixOptions::default()
    };
    let grid = Matrix::run(&options).unwrap();
    let result = |policy: &str| {
        let cell = grid.cells.iter().find(|c| c.policy.contains(policy)).unwrap();
        cell.result.clone()
    };
    assert!(
        matches!(result("deny-all"), CellResult::LoadFailed(e) if e.contains("`host::call`")),
        "{:?}",
        result("deny-all")
    );
    let CellResult::Ran(outcome) = result("trap") else {
        panic!("{:?}", result("trap"))
    };
    assert_eq!(outcome.status, wasmcell::Status::Trap);
    assert!(
        outcome.trap.as_deref().unwrap_or("").contains("`host::call`"),
        "{outcome:?}"
    );
    // The same in worker processes (the command line's default).
    let run = matrix(&[s(&guest)], &[DENY_ALL, s(&trap)], &["--format", "json"]);
    let json: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr));
    let cells = json["cells"].as_array().unwrap();
    let cell = |policy: &str| {
        cells
            .iter()
            .find(|c| c["policy"].as_str().unwrap().contains(policy))
            .unwrap()
    };
    assert!(
        cell("deny-all").to_string().contains("`host::call`"),
        "{}",
        cell("deny-all")
    );
    assert_eq!(cell("trap")["status"], "trap", "{}", cell("trap"));
    assert!(cell("trap").to_string().contains("`host::call`"), "{}", cell("trap"));
}
