//! The cells of a plan: the engines and programs they share, compiled once
//! here, and each cell run in this process or in a worker of its own.
//! `run.rs` (a matrix) and `learn.rs` (its proof runs) both run cells here.

use super::{CellResult, Entry, Expectations, Isolation, MatrixOptions, ModuleSetup};
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
