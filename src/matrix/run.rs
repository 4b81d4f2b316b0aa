//! Running a matrix: `discover` → `load_programs` → `run_cells` → `judge`.

use super::discovery::expectations_path;
use super::expectations::{Expected, Pattern};
use super::learn::{Target, learn};
use super::{
    Cell, CellResult, Entry, Expectations, Isolation, Matrix, MatrixOptions, ModuleSetup, Verdict, bad_input,
    discover_modules, discover_policies, exit_code, status_name,
};
use crate::engine::{Engine, EngineConfig, LoadError, Program, signers_of_file};
use crate::outcome::{EXIT_LOAD, Outcome, exit_code_for_error};
use crate::policy::{Policy, Proposals, UnknownImports};
use crate::sandbox::Sandbox;
use crate::worker::{CompiledProgram, Job, PolicySource, Worker};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

impl Matrix {
    /// Runs every module under every policy.
    ///
    /// # Errors
    ///
    /// A [`RequestError`](crate::RequestError) of kind `MatrixInput` or [`crate::PolicyError`] for bad
    /// input; other errors when an engine cannot be created. Guests that fail
    /// are data.
    pub fn run(options: &MatrixOptions) -> Result<Matrix> {
        let plan = discover(options)?;
        let target = match &options.learn {
            Some(dir) => Some(Target::new(dir, &plan)?),
            None => None,
        };
        let programs = load_programs(&plan, &options.isolation)?;
        let results = run_cells(&plan, &programs, options);
        let learned = match &target {
            Some(target) => learn(&plan, &programs, &results, target, options)?,
            None => Vec::new(),
        };
        let mut matrix = judge(plan, results);
        matrix.in_process = matches!(options.isolation, Isolation::InProcess);
        matrix.learned = learned;
        Ok(matrix)
    }
}

/// A matrix engine's stack size, Wasm proposals and unknown-imports mode.
type EngineKey = (u64, Proposals, UnknownImports);

/// What a matrix will run: its axes, its expectations and the cells kept by
/// the filter, as `(module, policy)` indices.
pub(super) struct Plan {
    pub(super) modules: Vec<Entry>,
    pub(super) policies: Vec<(Entry, Policy)>,
    pub(super) expectations: Expectations,
    pub(super) expectations_path: Option<PathBuf>,
    pub(super) jobs: Vec<(usize, usize)>,
}

impl Plan {
    /// What decides the engine a policy's cells need: its stack size, its
    /// Wasm proposals and `wasm.unknown-imports` (fuel is compiled into
    /// every matrix engine).
    fn engine_key(&self, policy: usize) -> EngineKey {
        let config = EngineConfig::for_policy(&self.policies[policy].1);
        (config.stack, config.proposals, config.unknown_imports)
    }
}

/// Finds the modules, policies and expectations, and the cells to run.
fn discover(options: &MatrixOptions) -> Result<Plan> {
    let modules = discover_modules(&options.modules)?;
    let policies: Vec<(Entry, Policy)> = discover_policies(&options.policies)?
        .into_iter()
        .map(|e| Policy::from_file(&e.path).map(|p| (e, p)))
        .collect::<Result<_, _>>()?;
    let expectations_path = expectations_path(options);
    let expectations = match &expectations_path {
        Some(path) => Expectations::from_file(path)?,
        None => Expectations::default(),
    };
    let filter = options.filter.as_deref().map(Pattern::new).transpose()?;
    let keep = |m: &str, p: &str| {
        filter
            .as_ref()
            .is_none_or(|f| f.is_match(&format!("{m}/{p}")) || f.is_match(m) || f.is_match(p))
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
    Ok(Plan {
        modules,
        policies,
        expectations,
        expectations_path,
        jobs,
    })
}

/// The engines and compiled modules the cells share.
pub(super) struct Programs {
    /// One engine per stack size and proposal set, with fuel compiled in so
    /// that metered and unmetered policies share it.
    engines: BTreeMap<EngineKey, Engine>,
    /// Each module compiled once per engine: by (engine key, module index).
    programs: BTreeMap<(EngineKey, usize), Result<Program, LoadError>>,
    /// For workers: each loaded program as the native code every cell's
    /// worker is handed (or why it could not be serialized).
    code: BTreeMap<(EngineKey, usize), Result<CompiledProgram, String>>,
    /// For the cells whose policy asks for a signature (`module.signed-by`):
    /// the signers that verify the module, by (module, policy).
    signers: BTreeMap<(usize, usize), Result<Vec<String>, LoadError>>,
}

impl Programs {
    /// The SHA-256 of module `m` as this process compiled it (`None` when
    /// it did not load): what a learned policy pins, never a cell's report.
    pub(super) fn sha256_of(&self, m: usize) -> Option<String> {
        self.programs
            .iter()
            .filter(|((_, module), _)| *module == m)
            .find_map(|(_, program)| program.as_ref().ok().and_then(Program::sha256))
    }
}

/// Creates the engines and compiles each module the cells need once per
/// engine; a module that does not load is a result of its cells, not an error.
pub(super) fn load_programs(plan: &Plan, isolation: &Isolation) -> Result<Programs> {
    let mut engines: BTreeMap<EngineKey, Engine> = BTreeMap::new();
    for p in 0..plan.policies.len() {
        let key = plan.engine_key(p);
        if let std::collections::btree_map::Entry::Vacant(slot) = engines.entry(key) {
            slot.insert(Engine::new(EngineConfig {
                fuel: true,
                stack: key.0,
                proposals: key.1,
                unknown_imports: key.2,
                ..EngineConfig::default()
            })?);
        }
    }
    let max_size = plan
        .policies
        .iter()
        .map(|(_, p)| p.limits().module_size.value)
        .max()
        .unwrap_or(0);
    let mut programs = BTreeMap::new();
    for &(m, p) in &plan.jobs {
        let key = plan.engine_key(p);
        let library = plan
            .expectations
            .setup_for(&plan.modules[m].name)
            .is_some_and(|s| s.invoke.is_some());
        programs.entry((key, m)).or_insert_with(|| {
            let path = &plan.modules[m].path;
            match library {
                true => engines[&key].load_library(path, max_size),
                false => engines[&key].load(path, max_size),
            }
        });
    }
    let mut code = BTreeMap::new();
    if let Isolation::Worker(_) = isolation {
        for (&(key, m), program) in &programs {
            if let Ok(program) = program {
                let compiled = CompiledProgram::new(&engines[&key], program).map_err(|e| format!("{e:#}"));
                code.insert((key, m), compiled);
            }
        }
    }
    let mut signers = BTreeMap::new();
    for &(m, p) in &plan.jobs {
        let (path, policy) = (&plan.modules[m].path, &plan.policies[p].1);
        if let (Some(_), Ok(program)) = (policy.module_signed_by(), &programs[&(plan.engine_key(p), m)]) {
            let verified = signers_of_file(policy, path, max_size, program.sha256.as_ref()).map_err(|kind| LoadError {
                module: path.clone(),
                kind,
            });
            signers.insert((m, p), verified);
        }
    }
    Ok(Programs {
        engines,
        programs,
        code,
        signers,
    })
}

/// Runs every cell of the plan on `options.jobs` threads; results in job order.
pub(super) fn run_cells(plan: &Plan, programs: &Programs, options: &MatrixOptions) -> Vec<CellResult> {
    let total = plan.jobs.len();
    let (next, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let results: Mutex<Vec<Option<CellResult>>> = Mutex::new(vec![None; total]);
    let workers = match options.jobs {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    }
    .min(total);
    if let Some(progress) = &options.progress {
        progress(0, total);
    }
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(m, p)) = plan.jobs.get(index) else { break };
                    let result = run_cell(plan, programs, (m, p), options);
                    results.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(result);
                    if let Some(progress) = &options.progress {
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.into_iter().map(|r| r.expect("every job ran")).collect()
}

/// Runs the cell of module `m` under policy `p`, here or in a worker.
fn run_cell(plan: &Plan, programs: &Programs, (m, p): (usize, usize), options: &MatrixOptions) -> CellResult {
    let record = options.learn.is_some();
    let key = plan.engine_key(p);
    let setup = plan.expectations.setup_for(&plan.modules[m].name);
    let program = match &programs.programs[&(key, m)] {
        Ok(program) => program,
        Err(e) => return CellResult::LoadFailed(e.to_string()),
    };
    let signers = match programs.signers.get(&(m, p)) {
        None => None,
        Some(Ok(signers)) => Some(signers.clone()),
        Some(Err(e)) => return CellResult::LoadFailed(e.to_string()),
    };
    let ran = match &options.isolation {
        Isolation::InProcess => {
            let signed;
            let program = match signers {
                Some(signers) => {
                    signed = program.with_signers(signers);
                    &signed
                }
                None => program,
            };
            run_here(&programs.engines[&key], program, &plan.policies[p].1, setup, record)
        }
        Isolation::Worker(worker) => match &programs.code[&(key, m)] {
            Ok(code) => {
                let code = match signers {
                    Some(signers) => code.with_signers(signers),
                    None => code.clone(),
                };
                run_in_worker(worker, &code, &plan.policies[p].0.path, setup, record)
            }
            Err(e) => return CellResult::Failed(e.clone()),
        },
    };
    match ran {
        Ok(outcome) => CellResult::Ran(outcome),
        // Classified as `wasmcell run` would exit for it.
        Err(e) if exit_code_for_error(&e) == EXIT_LOAD => CellResult::LoadFailed(format!("{e:#}")),
        Err(e) => CellResult::Failed(format!("{e:#}")),
    }
}

/// A cell in this process.
fn run_here(
    engine: &Engine,
    program: &Program,
    policy: &Policy,
    setup: Option<&ModuleSetup>,
    record: bool,
) -> Result<Outcome> {
    let mut builder = Sandbox::builder()
        .engine(engine.clone())
        .policy(policy.clone())
        .capture_output(true)
        .record_uses(record);
    if let Some(stdin) = setup.and_then(|s| s.stdin.as_ref()) {
        builder = builder.stdin(stdin.clone().into_bytes());
    }
    let args: &[String] = setup.map(|s| &s.args[..]).unwrap_or_default();
    let invoke = setup.and_then(|s| s.invoke.as_deref());
    let sandbox = builder.build()?;
    crate::worker::run_in_process(&sandbox, program, args, invoke)
}

/// A cell in a worker process of its own, handed the compiled code; the
/// worker reads the policy file again.
fn run_in_worker(
    worker: &Worker,
    code: &CompiledProgram,
    policy: &Path,
    setup: Option<&ModuleSetup>,
    record: bool,
) -> Result<Outcome> {
    let mut job = Job::new(PolicySource::File(policy.to_path_buf()), code.clone()).record_uses(record);
    if let Some(setup) = setup {
        job = job.args(setup.args.iter().cloned());
        if let Some(stdin) = &setup.stdin {
            job = job.stdin(stdin.clone().into_bytes());
        }
        if let Some(call) = &setup.invoke {
            job = job.invoke(call.clone());
        }
    }
    worker.run(&job)
}

/// Each cell against its expectation, and the axes that kept a cell.
fn judge(plan: Plan, results: Vec<CellResult>) -> Matrix {
    let cells = plan
        .jobs
        .iter()
        .zip(results)
        .map(|(&(m, p), result)| {
            let (module, (policy, _)) = (&plan.modules[m], &plan.policies[p]);
            let verdict = match plan.expectations.expectation_for(&module.name, &policy.name) {
                Some(expected) => check(expected, &result),
                None => Verdict::Unchecked,
            };
            let setup = plan.expectations.setup_for(&module.name);
            Cell {
                module: module.name.clone(),
                policy: policy.name.clone(),
                reproduce: reproduce(&policy.path, &module.path, setup),
                result,
                verdict,
            }
        })
        .collect();
    let used = |axis: fn(&(usize, usize)) -> usize, names: Vec<&String>| -> Vec<String> {
        let mut seen = vec![false; names.len()];
        plan.jobs.iter().for_each(|j| seen[axis(j)] = true);
        names
            .into_iter()
            .zip(seen)
            .filter(|(_, u)| *u)
            .map(|(n, _)| n.clone())
            .collect()
    };
    Matrix {
        modules: used(|j| j.0, plan.modules.iter().map(|m| &m.name).collect()),
        policies: used(|j| j.1, plan.policies.iter().map(|p| &p.0.name).collect()),
        cells,
        expectations: plan.expectations_path,
        in_process: true,
        learned: Vec::new(),
    }
}

fn check(expected: &Expected, result: &CellResult) -> Verdict {
    let want = &expected.cell;
    let mut failures = Vec::new();
    let (status, exit_code) = (status_name(result), exit_code(result));
    if let Some(want) = &want.status
        && want.get_ref() != status
    {
        failures.push(format!("status: expected {}, got {status}", want.get_ref()));
    }
    if let Some(want) = want.exit_code
        && want != exit_code
    {
        failures.push(format!("exit code: expected {want}, got {exit_code}"));
    }
    check_streams(expected, result, &mut failures);
    if let Some(most) = want.fuel_used_at_most {
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
    if let Some(kind) = &want.denial {
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

/// The `stdout-*` and `stderr-*` expectations.
fn check_streams(expected: &Expected, result: &CellResult, failures: &mut Vec<String>) {
    let empty = Vec::new();
    let (stdout, stderr) = match result {
        CellResult::Ran(o) => (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        _ => (String::from_utf8_lossy(&empty), String::from_utf8_lossy(&empty)),
    };
    let want = &expected.cell;
    for (name, text, contains, re) in [
        ("stdout", &stdout, &want.stdout_contains, &expected.stdout_re),
        ("stderr", &stderr, &want.stderr_contains, &expected.stderr_re),
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
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 120;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

fn reproduce(policy: &Path, module: &Path, setup: Option<&ModuleSetup>) -> String {
    let invoke = match setup.and_then(|s| s.invoke.as_ref()) {
        Some(call) => format!("--invoke {} ", quote(call)),
        None => String::new(),
    };
    let mut cmd = format!(
        "wasmcell run --policy {} {invoke}{}",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_for_the_shell() {
        assert_eq!(quote("/data/hello.txt"), "/data/hello.txt");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
    }
}
