//! `wasmcell matrix`: every module under every policy, each cell checked
//! against a declared expectation, so that a policy change that widens or
//! breaks access fails CI.
//!
//! Stages: `discover_modules` / `discover_policies` → `Expectations::from_file`
//! → `Matrix::run` (each module compiled once per engine, cells run in
//! parallel through the library) → `render_table` / `render_json` /
//! `render_junit`.

use crate::engine::{Engine, EngineConfig, LoadError, Program};
use crate::outcome::{EXIT_LOAD, EXIT_SANDBOX, Outcome, Status};
use crate::policy::Policy;
use crate::runner::Sandbox;
use anyhow::{Context as _, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use toml::Spanned;

/// The name of the expectations file looked for beside the policies; it is
/// never taken for a policy.
pub const EXPECTATIONS_FILE: &str = "expectations.toml";

/// Bad input to the matrix: unreadable or invalid expectations, no modules
/// or policies, duplicate names. Nothing ran; `wasmcell matrix` exits 2.
#[derive(Debug)]
pub struct MatrixError(String);

impl fmt::Display for MatrixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MatrixError {}

fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    MatrixError(msg.into()).into()
}

// ---------------------------------------------------------------------------
// Expectations.
// ---------------------------------------------------------------------------

/// An expectations file as written.
///
/// ```toml
/// [[module]]                 # how to invoke a module (glob allowed)
/// name = "fs_read"
/// args = ["/data/hello.txt"]
/// stdin = "optional text"
///
/// [[cell]]                   # what a cell must show; the most specific match wins
/// module = "fs_*"
/// policy = "deny-all"
/// status = "exited"
/// exit-code = 1
/// stderr-contains = "NotFound"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExpectationsFile {
    /// How modules are invoked. Absent: no arguments, stdin closed.
    #[serde(default)]
    pub module: Vec<ModuleSetup>,
    /// Expected outcomes. A cell no entry matches is reported as unchecked.
    #[serde(default)]
    pub cell: Vec<CellExpectation>,
}

/// Arguments and stdin for the modules whose name matches `name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModuleSetup {
    /// Module name (file name without extension); `*` and `?` are wildcards.
    pub name: String,
    /// Arguments after `argv[0]`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Text fed to stdin. Absent: the policy's stdin.
    pub stdin: Option<String>,
}

/// What one or more cells must show. Every key given must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CellExpectation {
    /// Module name pattern (`*` and `?` are wildcards).
    pub module: Spanned<String>,
    /// Policy name pattern: the policy file's name without `.toml`.
    pub policy: String,
    /// `exited`, `trap`, `timeout`, `fuel-exhausted`, `memory-limit`,
    /// `output-limit` or `load-error`.
    pub status: Option<Spanned<String>>,
    /// The code `wasmcell run` would exit with.
    pub exit_code: Option<u8>,
    /// Substring stdout must contain.
    pub stdout_contains: Option<String>,
    /// Regular expression stdout must match.
    pub stdout_matches: Option<Spanned<String>>,
    /// Substring stderr must contain.
    pub stderr_contains: Option<String>,
    /// Regular expression stderr must match.
    pub stderr_matches: Option<Spanned<String>>,
    /// Most fuel the run may use (the policy must meter fuel).
    pub fuel_used_at_most: Option<u64>,
    /// A denial of this kind (such as `tcp-connect`) must be reported.
    pub denial: Option<String>,
}

const STATUS_NAMES: &[&str] = &[
    "exited",
    "trap",
    "timeout",
    "fuel-exhausted",
    "memory-limit",
    "output-limit",
    "load-error",
];

/// A validated expectations file.
#[derive(Debug, Default)]
pub struct Expectations {
    modules: Vec<ModuleSetup>,
    cells: Vec<(CellExpectation, Option<regex::Regex>, Option<regex::Regex>)>,
}

impl Expectations {
    /// Reads and validates an expectations file.
    ///
    /// # Errors
    ///
    /// A [`MatrixError`] naming the file and line for TOML errors, unknown
    /// keys, unknown statuses and invalid regular expressions.
    pub fn from_file(path: &Path) -> Result<Expectations> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad_input(format!("cannot read expectations `{}`: {e}", path.display())))?;
        let at = |span: Option<std::ops::Range<usize>>| match span {
            Some(s) => format!("{}:{}", path.display(), text[..s.start].matches('\n').count() + 1),
            None => path.display().to_string(),
        };
        let file: ExpectationsFile =
            toml::from_str(&text).map_err(|e| bad_input(format!("{}: {}", at(e.span()), e.message().trim())))?;
        let regex = |r: &Option<Spanned<String>>| -> Result<Option<regex::Regex>> {
            r.as_ref()
                .map(|r| {
                    regex::Regex::new(r.get_ref())
                        .map_err(|e| bad_input(format!("{}: invalid regular expression: {e}", at(Some(r.span())))))
                })
                .transpose()
        };
        let mut cells = Vec::new();
        for cell in file.cell {
            // An entry that expects nothing would turn every cell it names into
            // a "match" that checked nothing, so it is refused.
            let expects_something = cell.status.is_some()
                || cell.exit_code.is_some()
                || cell.stdout_contains.is_some()
                || cell.stdout_matches.is_some()
                || cell.stderr_contains.is_some()
                || cell.stderr_matches.is_some()
                || cell.fuel_used_at_most.is_some()
                || cell.denial.is_some();
            if !expects_something {
                return Err(bad_input(format!(
                    "{}: this [[cell]] expects nothing; give it at least one of status, exit-code, stdout-contains, stdout-matches, stderr-contains, stderr-matches, fuel-used-at-most, denial",
                    at(Some(cell.module.span()))
                )));
            }
            if let Some(status) = &cell.status
                && !STATUS_NAMES.contains(&status.get_ref().as_str())
            {
                return Err(bad_input(format!(
                    "{}: unknown status `{}`; expected one of {}",
                    at(Some(status.span())),
                    status.get_ref(),
                    STATUS_NAMES.join(", ")
                )));
            }
            let (out, err) = (regex(&cell.stdout_matches)?, regex(&cell.stderr_matches)?);
            cells.push((cell, out, err));
        }
        Ok(Expectations {
            modules: file.module,
            cells,
        })
    }

    /// The setup for `module`: the most specific `[[module]]` entry matching it.
    fn setup_for(&self, module: &str) -> Option<&ModuleSetup> {
        best_match(self.modules.iter().enumerate(), |(_, m)| specificity(&m.name, module)).map(|(_, m)| m)
    }

    /// The expectation for a cell: the most specific `[[cell]]` whose module
    /// and policy patterns both match; among equals, the later entry.
    fn expectation_for(
        &self,
        module: &str,
        policy: &str,
    ) -> Option<&(CellExpectation, Option<regex::Regex>, Option<regex::Regex>)> {
        best_match(self.cells.iter().enumerate(), |(_, (c, _, _))| {
            let m = specificity(c.module.get_ref(), module)?;
            let p = specificity(&c.policy, policy)?;
            Some((m.0 + p.0, m.1 + p.1))
        })
        .map(|(_, c)| c)
    }
}

/// The highest-scoring item; later items win ties.
fn best_match<T>(items: impl Iterator<Item = T>, score: impl Fn(&T) -> Option<(usize, usize)>) -> Option<T> {
    items
        .filter_map(|item| score(&item).map(|s| (s, item)))
        .fold(None, |best, (s, item)| match best {
            Some((bs, _)) if bs > s => best,
            _ => Some((s, item)),
        })
        .map(|(_, item)| item)
}

/// How specifically `pattern` names `text`: `None` when it does not match;
/// otherwise (1 for an exact name, number of literal characters).
fn specificity(pattern: &str, text: &str) -> Option<(usize, usize)> {
    if !glob_match(pattern, text) {
        return None;
    }
    let literal = pattern.chars().filter(|c| !matches!(c, '*' | '?')).count();
    Some((usize::from(literal == pattern.chars().count()), literal))
}

/// `*` matches any run of characters, `?` any one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

// ---------------------------------------------------------------------------
// Discovery.
// ---------------------------------------------------------------------------

/// A module or policy in the matrix: its name and file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// File name without extension.
    pub name: String,
    /// The file.
    pub path: PathBuf,
}

/// Modules named by `paths`: `.wasm` and `.wat` files, or every such file
/// directly inside a directory.
///
/// # Errors
///
/// A [`MatrixError`] for a missing path, no modules at all, or two modules
/// with the same name.
pub fn discover_modules(paths: &[PathBuf]) -> Result<Vec<Entry>> {
    discover(paths, &["wasm", "wat"], "modules", |_| true)
}

/// Policies named by `paths`: `.toml` files, or every such file directly
/// inside a directory except [`EXPECTATIONS_FILE`].
///
/// # Errors
///
/// As [`discover_modules`].
pub fn discover_policies(paths: &[PathBuf]) -> Result<Vec<Entry>> {
    discover(paths, &["toml"], "policies", |p| {
        p.file_name().is_some_and(|n| n != EXPECTATIONS_FILE)
    })
}

fn discover(paths: &[PathBuf], exts: &[&str], what: &str, keep: impl Fn(&Path) -> bool) -> Result<Vec<Entry>> {
    let has_ext = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.contains(&e))
    };
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("failed to list `{}`", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_ext(p) && keep(p))
                .collect();
            files.sort();
            found.extend(files);
        } else if path.is_file() {
            found.push(path.clone());
        } else {
            return Err(bad_input(format!(
                "`{}` does not exist; name {what} as files or directories",
                path.display()
            )));
        }
    }
    let mut entries: Vec<Entry> = Vec::new();
    for path in found {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(other) = entries.iter().find(|e| e.name == name) {
            return Err(bad_input(format!(
                "two {what} are named `{name}`: `{}` and `{}`; cells are named by file, so rename one",
                other.path.display(),
                path.display()
            )));
        }
        entries.push(Entry { name, path });
    }
    if entries.is_empty() {
        let names: Vec<_> = paths.iter().map(|p| format!("`{}`", p.display())).collect();
        return Err(bad_input(format!(
            "no {what} ({}) found in {}",
            exts.join(", "),
            names.join(", ")
        )));
    }
    Ok(entries)
}

// ---------------------------------------------------------------------------
// Running.
// ---------------------------------------------------------------------------

/// How a cell ended.
#[derive(Debug, Clone)]
pub enum CellResult {
    /// The guest ran; this is how it ended.
    Ran(Outcome),
    /// The module could not be loaded under this policy.
    LoadFailed(String),
    /// The sandbox itself failed.
    Failed(String),
}

/// How a cell compares with its expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every expected value held.
    Match,
    /// These expected values did not hold.
    Mismatch(Vec<String>),
    /// No expectation names this cell.
    Unchecked,
}

/// One module run under one policy.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Module name.
    pub module: String,
    /// Policy name.
    pub policy: String,
    /// How it ended.
    pub result: CellResult,
    /// Against the expectation.
    pub verdict: Verdict,
    /// A `wasmcell run` command that reproduces the cell.
    pub reproduce: String,
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct MatrixOptions {
    /// Modules: files or directories.
    pub modules: Vec<PathBuf>,
    /// Policies: files or directories.
    pub policies: Vec<PathBuf>,
    /// Expectations file; `None` looks for [`EXPECTATIONS_FILE`] in the
    /// first policy directory.
    pub expect: Option<PathBuf>,
    /// Cells run at once; 0 means one per CPU.
    pub jobs: usize,
    /// Keep only cells whose `module/policy`, module or policy name matches.
    pub filter: Option<String>,
    /// Report progress on stderr.
    pub progress: bool,
}

/// The result of a matrix run.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// Module names, in row order.
    pub modules: Vec<String>,
    /// Policy names, in column order.
    pub policies: Vec<String>,
    /// Every cell that ran, row by row.
    pub cells: Vec<Cell>,
    /// The expectations file used, if any.
    pub expectations: Option<PathBuf>,
}

impl Matrix {
    /// Runs every module under every policy.
    ///
    /// # Errors
    ///
    /// A [`MatrixError`] or [`crate::PolicyError`] for bad input; other
    /// errors when an engine cannot be created. Guests that fail are data.
    pub fn run(options: &MatrixOptions) -> Result<Matrix> {
        let modules = discover_modules(&options.modules)?;
        let policy_entries = discover_policies(&options.policies)?;
        let policies: Vec<(Entry, Policy)> = policy_entries
            .into_iter()
            .map(|e| Policy::from_file(&e.path).map(|p| (e, p)))
            .collect::<Result<_, _>>()?;
        let expect_path = options.expect.clone().or_else(|| {
            let dir = options.policies.iter().find(|p| p.is_dir())?;
            Some(dir.join(EXPECTATIONS_FILE)).filter(|p| p.is_file())
        });
        let expectations = match &expect_path {
            Some(path) => Expectations::from_file(path)?,
            None => Expectations::default(),
        };

        let keep = |m: &str, p: &str| {
            options
                .filter
                .as_deref()
                .is_none_or(|f| glob_match(f, &format!("{m}/{p}")) || glob_match(f, m) || glob_match(f, p))
        };
        let jobs: Vec<(usize, usize)> = (0..modules.len())
            .flat_map(|m| (0..policies.len()).map(move |p| (m, p)))
            .filter(|&(m, p)| keep(&modules[m].name, &policies[p].0.name))
            .collect();
        if jobs.is_empty() {
            return Err(bad_input(
                "the filter matches no cell; check the pattern against `module/policy`",
            ));
        }

        // One engine per stack size, with fuel compiled in so that metered
        // and unmetered policies share it; each module compiled once per engine.
        let mut engines: BTreeMap<u64, Engine> = BTreeMap::new();
        for (_, policy) in &policies {
            let stack = policy.limits.stack.value;
            if let std::collections::btree_map::Entry::Vacant(slot) = engines.entry(stack) {
                slot.insert(Engine::new(EngineConfig {
                    fuel: true,
                    stack,
                    ..EngineConfig::default()
                })?);
            }
        }
        let max_size = policies
            .iter()
            .map(|(_, p)| p.limits.module_size.value)
            .max()
            .unwrap_or(0);
        let mut programs: BTreeMap<(u64, usize), Result<Program, LoadError>> = BTreeMap::new();
        for &(m, p) in &jobs {
            let stack = policies[p].1.limits.stack.value;
            programs
                .entry((stack, m))
                .or_insert_with(|| engines[&stack].load(&modules[m].path, max_size));
        }

        let progress = Progress::new(options.progress, jobs.len());
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<CellResult>>> = Mutex::new(vec![None; jobs.len()]);
        let workers = match options.jobs {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        }
        .min(jobs.len());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(m, p)) = jobs.get(index) else { break };
                        let (_, policy) = &policies[p];
                        let stack = policy.limits.stack.value;
                        let setup = expectations.setup_for(&modules[m].name);
                        let result = run_cell(&engines[&stack], &programs[&(stack, m)], policy, setup);
                        results.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(result);
                        progress.tick();
                    }
                });
            }
        });
        progress.finish();

        let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        let cells = jobs
            .iter()
            .zip(results)
            .map(|(&(m, p), result)| {
                let result = result.expect("every job ran");
                let (module, (policy_entry, _)) = (&modules[m], &policies[p]);
                let verdict = match expectations.expectation_for(&module.name, &policy_entry.name) {
                    Some(expected) => check(expected, &result),
                    None => Verdict::Unchecked,
                };
                let setup = expectations.setup_for(&module.name);
                Cell {
                    module: module.name.clone(),
                    policy: policy_entry.name.clone(),
                    reproduce: reproduce(&policy_entry.path, &module.path, setup),
                    result,
                    verdict,
                }
            })
            .collect();
        let used = |i: &dyn Fn(&(usize, usize)) -> usize, len: usize| -> Vec<bool> {
            let mut seen = vec![false; len];
            jobs.iter().for_each(|j| seen[i(j)] = true);
            seen
        };
        let (module_used, policy_used) = (used(&|j| j.0, modules.len()), used(&|j| j.1, policies.len()));
        Ok(Matrix {
            modules: modules
                .iter()
                .zip(module_used)
                .filter(|(_, u)| *u)
                .map(|(m, _)| m.name.clone())
                .collect(),
            policies: policies
                .iter()
                .zip(policy_used)
                .filter(|(_, u)| *u)
                .map(|(p, _)| p.0.name.clone())
                .collect(),
            cells,
            expectations: expect_path,
        })
    }

    /// Cells that did not match their expectation.
    pub fn mismatches(&self) -> impl Iterator<Item = &Cell> {
        self.cells.iter().filter(|c| matches!(c.verdict, Verdict::Mismatch(_)))
    }

    /// `(matched, mismatched, unchecked)` cell counts.
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |f: fn(&Verdict) -> bool| self.cells.iter().filter(|c| f(&c.verdict)).count();
        (
            count(|v| *v == Verdict::Match),
            count(|v| matches!(v, Verdict::Mismatch(_))),
            count(|v| *v == Verdict::Unchecked),
        )
    }

    /// 0 when every checked cell matched, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.mismatches().next().is_some())
    }
}

fn run_cell(
    engine: &Engine,
    program: &Result<Program, LoadError>,
    policy: &Policy,
    setup: Option<&ModuleSetup>,
) -> CellResult {
    let program = match program {
        Ok(program) => program,
        Err(e) => return CellResult::LoadFailed(e.to_string()),
    };
    let mut builder = Sandbox::builder()
        .engine(engine.clone())
        .policy(policy.clone())
        .capture_output(true);
    if let Some(stdin) = setup.and_then(|s| s.stdin.as_ref()) {
        builder = builder.stdin(stdin.clone().into_bytes());
    }
    let args: &[String] = setup.map(|s| &s.args[..]).unwrap_or_default();
    match builder.build().and_then(|sandbox| sandbox.run_program(program, args)) {
        Ok(outcome) => CellResult::Ran(outcome),
        Err(e) if e.is::<LoadError>() => CellResult::LoadFailed(format!("{e:#}")),
        Err(e) => CellResult::Failed(format!("{e:#}")),
    }
}

type Expected = (CellExpectation, Option<regex::Regex>, Option<regex::Regex>);

fn check((expected, stdout_re, stderr_re): &Expected, result: &CellResult) -> Verdict {
    let mut failures = Vec::new();
    let (status, exit_code) = (status_name(result), exit_code(result));
    if let Some(want) = &expected.status
        && want.get_ref() != status
    {
        failures.push(format!("status: expected {}, got {status}", want.get_ref()));
    }
    if let Some(want) = expected.exit_code
        && want != exit_code
    {
        failures.push(format!("exit code: expected {want}, got {exit_code}"));
    }
    let empty = Vec::new();
    let (stdout, stderr) = match result {
        CellResult::Ran(o) => (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        _ => (String::from_utf8_lossy(&empty), String::from_utf8_lossy(&empty)),
    };
    for (name, text, contains, re) in [
        ("stdout", &stdout, &expected.stdout_contains, stdout_re),
        ("stderr", &stderr, &expected.stderr_contains, stderr_re),
    ] {
        if let Some(want) = contains
            && !text.contains(want.as_str())
        {
            failures.push(format!("{name}: expected to contain {want:?}, got {:?}", excerpt(text)));
        }
        if let Some(re) = re
            && !re.is_match(text)
        {
            failures.push(format!(
                "{name}: expected to match /{}/, got {:?}",
                re.as_str(),
                excerpt(text)
            ));
        }
    }
    if let Some(most) = expected.fuel_used_at_most {
        match result {
            CellResult::Ran(Outcome {
                fuel_used: Some(used), ..
            }) if *used <= most => {}
            CellResult::Ran(Outcome {
                fuel_used: Some(used), ..
            }) => failures.push(format!("fuel used: expected at most {most}, got {used}")),
            _ => failures.push(format!(
                "fuel used: expected at most {most}, but the run was not metered"
            )),
        }
    }
    if let Some(kind) = &expected.denial {
        let denied = matches!(result, CellResult::Ran(o) if o.denials.iter().any(|d| &d.kind == kind));
        if !denied {
            failures.push(format!("denials: expected a `{kind}` denial, got none"));
        }
    }
    if failures.is_empty() {
        Verdict::Match
    } else {
        Verdict::Mismatch(failures)
    }
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 120;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// The status name a cell ended with, as expectations write it.
pub fn status_name(result: &CellResult) -> &'static str {
    match result {
        CellResult::Ran(o) => o.status.name(),
        CellResult::LoadFailed(_) => "load-error",
        CellResult::Failed(_) => "sandbox-error",
    }
}

fn exit_code(result: &CellResult) -> u8 {
    match result {
        CellResult::Ran(o) => o.exit_code(),
        CellResult::LoadFailed(_) => EXIT_LOAD,
        CellResult::Failed(_) => EXIT_SANDBOX,
    }
}

/// A few characters for the grid: `0`, `134`, `fuel`, `mem`, `time`, `out`,
/// `deny:tcp`, `load`, `err`.
pub fn short(result: &CellResult) -> String {
    match result {
        CellResult::Ran(o) => match (&o.status, o.denials.first()) {
            (_, Some(denial)) => {
                format!("deny:{}", denial.kind.split('-').next().unwrap_or(&denial.kind))
            }
            (Status::FuelExhausted, _) => "fuel".into(),
            (Status::MemoryLimit, _) => "mem".into(),
            (Status::Timeout, _) => "time".into(),
            (Status::OutputLimit, _) => "out".into(),
            _ => o.exit_code().to_string(),
        },
        CellResult::LoadFailed(_) => "load".into(),
        CellResult::Failed(_) => "err".into(),
    }
}

fn reproduce(policy: &Path, module: &Path, setup: Option<&ModuleSetup>) -> String {
    let mut cmd = format!(
        "wasmcell run --policy {} {}",
        quote(&policy.display().to_string()),
        quote(&module.display().to_string())
    );
    for arg in setup.map(|s| &s.args[..]).unwrap_or_default() {
        cmd.push(' ');
        cmd.push_str(&quote(arg));
    }
    if let Some(stdin) = setup.and_then(|s| s.stdin.as_ref()) {
        cmd = format!(
            "printf %s {} | {}",
            quote(stdin),
            cmd.replacen("wasmcell run ", "wasmcell run --stdin inherit ", 1)
        );
    }
    cmd
}

/// Quotes `s` for a POSIX shell when it needs it.
fn quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A one-line progress counter on stderr, for terminals only, shown once the
/// matrix has taken more than a moment so that quick runs stay quiet.
struct Progress {
    enabled: bool,
    total: usize,
    done: AtomicUsize,
    start: std::time::Instant,
    shown: std::sync::atomic::AtomicBool,
}

impl Progress {
    const QUIET_FOR: std::time::Duration = std::time::Duration::from_millis(500);

    fn new(enabled: bool, total: usize) -> Progress {
        Progress {
            enabled,
            total,
            done: AtomicUsize::new(0),
            start: std::time::Instant::now(),
            shown: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if self.enabled && self.start.elapsed() >= Self::QUIET_FOR {
            self.shown.store(true, Ordering::Relaxed);
            // A terminal that went away loses the line; it must not panic.
            use std::io::Write as _;
            let _ = write!(std::io::stderr(), "\rwasmcell matrix: {done}/{} cells", self.total);
        }
    }

    fn finish(&self) {
        if self.shown.load(Ordering::Relaxed) {
            use std::io::Write as _;
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

// ---------------------------------------------------------------------------
// Rendering.
// ---------------------------------------------------------------------------

/// The grid: modules as rows, policies as columns, each cell its outcome and
/// a mark (`✓` matched, `✗` mismatched, `?` unchecked), then the mismatches
/// with the command that reproduces each.
pub fn render_table(matrix: &Matrix, colour: bool) -> String {
    let paint = |text: &str, code: &str| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let cell_at = |m: &str, p: &str| matrix.cells.iter().find(|c| c.module == m && c.policy == p);
    let first = matrix
        .modules
        .iter()
        .map(|m| m.chars().count())
        .max()
        .unwrap_or(0)
        .max("module".len());
    let widths: Vec<usize> = matrix.policies.iter().map(|p| p.chars().count().max(8)).collect();

    let mut out = String::new();
    let _ = write!(out, "{:<first$}", "module");
    for (p, w) in matrix.policies.iter().zip(&widths) {
        let _ = write!(out, "  {p:<w$}");
    }
    end_row(&mut out);
    for m in &matrix.modules {
        let _ = write!(out, "{m:<first$}");
        for (p, w) in matrix.policies.iter().zip(&widths) {
            let Some(cell) = cell_at(m, p) else {
                let _ = write!(out, "  {:<w$}", "");
                continue;
            };
            let (mark, code) = match cell.verdict {
                Verdict::Match => ("✓", "32"),
                Verdict::Mismatch(_) => ("✗", "31;1"),
                Verdict::Unchecked => ("?", "33"),
            };
            let text = format!("{} {mark}", short(&cell.result));
            let pad = w.saturating_sub(text.chars().count());
            let _ = write!(out, "  {}{}", paint(&text, code), " ".repeat(pad));
        }
        end_row(&mut out);
    }
    let (ok, bad, unchecked) = matrix.counts();
    let _ = writeln!(
        out,
        "\n{} cells: {ok} matched, {bad} mismatched, {unchecked} unchecked",
        matrix.cells.len()
    );
    if unchecked > 0 {
        let _ = writeln!(
            out,
            "unchecked cells have no [[cell]] expectation; they are never counted as passed"
        );
    }
    if bad > 0 {
        let _ = writeln!(out, "\n{}", paint("mismatches:", "31;1"));
        for cell in matrix.mismatches() {
            let _ = writeln!(
                out,
                "  {} under {}: got {}",
                cell.module,
                cell.policy,
                short(&cell.result)
            );
            if let Verdict::Mismatch(failures) = &cell.verdict {
                for f in failures {
                    let _ = writeln!(out, "    {f}");
                }
            }
            if let CellResult::LoadFailed(e) | CellResult::Failed(e) = &cell.result {
                // Load and run errors can quote the module's own names.
                let _ = writeln!(out, "    error: {}", crate::term::sanitize(e));
            }
            let _ = writeln!(out, "    reproduce: {}", cell.reproduce);
        }
    }
    out
}

/// Ends a grid row without the padding of its last column.
fn end_row(out: &mut String) {
    out.truncate(out.trim_end_matches(' ').len());
    out.push('\n');
}

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Match => "match",
        Verdict::Mismatch(_) => "mismatch",
        Verdict::Unchecked => "unchecked",
    }
}

/// The matrix as JSON: a summary, the axes, and every cell with its outcome
/// report (as `wasmcell run --report` writes it) and verdict.
pub fn render_json(matrix: &Matrix) -> String {
    let (ok, bad, unchecked) = matrix.counts();
    let cells: Vec<_> = matrix
        .cells
        .iter()
        .map(|c| {
            let failures = match &c.verdict {
                Verdict::Mismatch(f) => f.clone(),
                _ => Vec::new(),
            };
            let (outcome, error) = match &c.result {
                CellResult::Ran(o) => (o.to_json(), None),
                CellResult::LoadFailed(e) | CellResult::Failed(e) => (serde_json::Value::Null, Some(e)),
            };
            serde_json::json!({
                "module": c.module,
                "policy": c.policy,
                "short": short(&c.result),
                "status": status_name(&c.result),
                "verdict": verdict_name(&c.verdict),
                "failures": failures,
                "outcome": outcome,
                "error": error,
                "reproduce": c.reproduce,
            })
        })
        .collect();
    let json = serde_json::json!({
        "summary": { "cells": matrix.cells.len(), "matched": ok, "mismatched": bad, "unchecked": unchecked },
        "expectations": matrix.expectations.as_ref().map(|p| p.display().to_string()),
        "modules": matrix.modules,
        "policies": matrix.policies,
        "cells": cells,
    });
    serde_json::to_string_pretty(&json).expect("a JSON value serializes") + "\n"
}

/// The matrix as JUnit XML: one test case per cell (class = module, name =
/// policy); mismatches are failures and unchecked cells are skipped.
pub fn render_junit(matrix: &Matrix) -> String {
    let (_, bad, unchecked) = matrix.counts();
    let total = matrix.cells.len();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"wasmcell matrix\" tests=\"{total}\" failures=\"{bad}\" skipped=\"{unchecked}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"wasmcell matrix\" tests=\"{total}\" failures=\"{bad}\" skipped=\"{unchecked}\">"
    );
    for c in &matrix.cells {
        let time = match &c.result {
            CellResult::Ran(o) => o.wall.as_secs_f64(),
            _ => 0.0,
        };
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{time:.3}\"",
            xml(&c.module),
            xml(&c.policy)
        );
        match &c.verdict {
            Verdict::Match => out.push_str("/>\n"),
            Verdict::Unchecked => out.push_str(">\n      <skipped message=\"no expectation\"/>\n    </testcase>\n"),
            Verdict::Mismatch(failures) => {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\">{}\nreproduce: {}</failure>\n    </testcase>",
                    xml(&failures.join("; ")),
                    xml(&failures.join("\n")),
                    xml(&c.reproduce)
                );
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters, even escaped.
            c if c.is_control() && !matches!(c, '\n' | '\r' | '\t') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("fs_*", "fs_read"));
        assert!(glob_match("fs_?ead", "fs_read"));
        assert!(glob_match("*_read", "fs_read"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("fs_*", "env_vars"));
        assert!(!glob_match("fs_read", "fs_read2"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
    }

    #[test]
    fn most_specific_expectation_wins_and_later_breaks_ties() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.toml");
        std::fs::write(
            &path,
            r#"
[[cell]]
module = "fs_read"
policy = "read-only"
exit-code = 0

[[cell]]
module = "*"
policy = "*"
exit-code = 1

[[cell]]
module = "fs_*"
policy = "*"
exit-code = 2

[[cell]]
module = "fs_*"
policy = "*"
exit-code = 3
"#,
        )
        .unwrap();
        let e = Expectations::from_file(&path).unwrap();
        let code = |m, p| e.expectation_for(m, p).and_then(|c| c.0.exit_code);
        assert_eq!(code("fs_read", "read-only"), Some(0), "exact names beat globs");
        assert_eq!(
            code("fs_read", "deny-all"),
            Some(3),
            "more literal characters win; ties go to the later entry"
        );
        assert_eq!(code("env_vars", "deny-all"), Some(1));
    }

    #[test]
    fn expectation_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.toml");
        let err = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Expectations::from_file(&path).unwrap_err().to_string()
        };
        let msg = err("[[cell]]\nmodule = \"*\"\npolicy = \"*\"\nstatus = \"crashed\"\n");
        assert!(
            msg.contains("e.toml:4: unknown status `crashed`; expected one of exited"),
            "{msg}"
        );
        let msg = err("[[cell]]\nmodule = \"*\"\npolicy = \"*\"\nstdout-matches = \"(\"\n");
        assert!(msg.contains("e.toml:4: invalid regular expression"), "{msg}");
        let msg = err("[[cell]]\nmodule = \"*\"\npolicy = \"*\"\nexit = 1\n");
        assert!(msg.contains("e.toml:4:") && msg.contains("exit-code"), "{msg}");
    }

    #[test]
    fn colour_only_when_asked_for() {
        let matrix = Matrix {
            modules: vec!["m".into()],
            policies: vec!["p".into()],
            cells: vec![Cell {
                module: "m".into(),
                policy: "p".into(),
                result: CellResult::LoadFailed("not wasm".into()),
                verdict: Verdict::Mismatch(vec!["status: expected exited, got load-error".into()]),
                reproduce: "wasmcell run --policy p.toml m.wasm".into(),
            }],
            expectations: None,
        };
        let plain = render_table(&matrix, false);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(plain.contains("load ✗") && plain.contains("reproduce: wasmcell run --policy p.toml m.wasm"));
        let coloured = render_table(&matrix, true);
        assert!(coloured.contains("\x1b[31;1mload ✗\x1b[0m"), "{coloured:?}");
    }

    #[test]
    fn quoting_for_the_shell() {
        assert_eq!(quote("/data/hello.txt"), "/data/hello.txt");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn xml_escapes_markup_and_control_characters() {
        assert_eq!(
            xml("<a href=\"x\">&'</a>\u{1b}"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;\u{fffd}"
        );
    }
}
