//! `MatrixOptions::learn`: one policy learned per module from all its cells,
//! written to a folder and proven as `wasmcell learn` proves one: the module
//! runs again under its learned policy alone (its arguments and stdin, the
//! matrix's isolation) and must end as its reference cell did (of its cells
//! with nothing refused, the one that used the most), with nothing refused.

use super::cells::{Plan, Programs, load_programs, run_cells};
use super::{CellResult, Entry, MatrixOptions, Verdict, bad_input, exit_code, status_name};
use crate::hostfs::HostFile;
use crate::learn::{LearnError, Learner, Observed};
use crate::policy::Policy;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// One module's learned policy, as [`Matrix::learned`](super::Matrix::learned) lists it.
#[derive(Debug, Clone)]
pub struct LearnedPolicy {
    /// The module's name.
    pub module: String,
    /// The file written, `DIR/<module>.toml`; `None` when nothing could be
    /// learned (see `verdict`).
    pub file: Option<PathBuf>,
    /// `Match`: the module ran under it as its reference cell ended (of its
    /// cells with nothing refused, the one that used the most), with nothing
    /// refused; `Mismatch`: what differed, or why nothing was learned;
    /// `Unchecked`: every cell of the module had refusals or did not run, so
    /// there is no clean ending to hold it to.
    pub verdict: Verdict,
}

/// Where the learned policies go, settled before any cell runs: the folder
/// (created, then canonical), refused inside a grant (of any access) of any of the
/// matrix's policies, and each module's file in it resolved now, so that a
/// link a guest plants later is not followed.
pub(super) struct Target {
    files: Vec<HostFile>,
}

impl Target {
    pub(super) fn new(dir: &Path, plan: &Plan) -> Result<Target> {
        let resolved = resolve_missing(dir)
            .map_err(|e| bad_input(format!("cannot resolve the learn folder `{}`: {e}", dir.display())))?;
        for (entry, policy) in &plan.policies {
            if let Some(grant) = policy.dirs().iter().find(|g| resolved.starts_with(&g.host)) {
                return Err(bad_input(format!(
                    "the learn folder `{}` is inside the grant at `{}` of policy `{}`, where its guests could read or change what is learned; learn into another folder",
                    dir.display(),
                    grant.guest,
                    entry.name
                )));
            }
        }
        std::fs::create_dir_all(&resolved)
            .map_err(|e| bad_input(format!("cannot create the learn folder `{}`: {e}", dir.display())))?;
        let canonical = std::fs::canonicalize(&resolved)
            .map_err(|e| bad_input(format!("cannot resolve the learn folder `{}`: {e}", dir.display())))?;
        let files = plan
            .modules
            .iter()
            .map(|m| {
                HostFile::resolve(
                    &Policy::deny_all(),
                    canonical.join(format!("{}.toml", m.name)),
                    "learned policy",
                )
            })
            .collect::<Result<_>>()?;
        Ok(Target { files })
    }
}

/// `path` absolute, its deepest existing ancestor canonical and the rest
/// appended: where a folder not made yet would be.
fn resolve_missing(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        rest.push(existing.file_name().unwrap_or_default().to_owned());
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    let mut resolved = std::fs::canonicalize(existing)?;
    resolved.extend(rest.iter().rev());
    Ok(resolved)
}

/// Learns each module's policy from its cells, writes it and proves it.
pub(super) fn learn(
    plan: &Plan,
    programs: &Programs,
    results: &[CellResult],
    target: &Target,
    options: &MatrixOptions,
) -> Result<Vec<LearnedPolicy>> {
    let mut learned = Vec::new();
    let mut proofs = Vec::new();
    for (m, module) in plan.modules.iter().enumerate() {
        let cells: Vec<(usize, &CellResult)> = plan
            .jobs
            .iter()
            .zip(results)
            .filter(|((cm, _), _)| *cm == m)
            .map(|(&(_, p), r)| (p, r))
            .collect();
        if cells.is_empty() {
            continue;
        }
        let file = &target.files[m];
        match learn_module(plan, module, &cells, programs.sha256_of(m)) {
            Ok((learner, ending)) => {
                let dir = file.path().parent().unwrap_or(Path::new("/"));
                file.write(learner.write(dir).as_bytes())?;
                proofs.push((m, file.path().to_path_buf(), ending));
            }
            Err(e) => learned.push(LearnedPolicy {
                module: module.name.clone(),
                file: None,
                verdict: Verdict::Mismatch(vec![format!("nothing learned: {e}")]),
            }),
        }
    }
    learned.extend(prove(plan, &proofs, options)?);
    learned.sort_by(|a, b| a.module.cmp(&b.module));
    Ok(learned)
}

/// How the module's reference cell ended, `(status, exit code)`: of its
/// cells with nothing refused, the one that used the most (the latest on a
/// tie). `None` when every cell had refusals or none ran.
type Ending = Option<(String, u8)>;

fn learn_module(
    plan: &Plan,
    module: &Entry,
    cells: &[(usize, &CellResult)],
    digest: Option<String>,
) -> Result<(Learner, Ending), LearnError> {
    let mut learner = Learner::new();
    let mut reference: Option<Observed> = None;
    for &(p, result) in cells {
        let CellResult::Ran(outcome) = result else { continue };
        let mut observed = Observed::of(outcome);
        // The pin is of what this process compiled, whatever a worker said.
        observed.module_sha256.clone_from(&digest);
        let (entry, policy) = &plan.policies[p];
        learner.add_run(&format!("{} under {}", module.name, entry.name), policy, &observed)?;
        if observed.denied == 0 && reference.as_ref().is_none_or(|r| observed.allowed >= r.allowed) {
            reference = Some(observed);
        }
    }
    Ok((learner, reference.map(|r| (r.status, r.exit_code))))
}

/// Runs each module under its learned policy and judges it; a learned
/// policy that does not load is judged so, without stopping the others.
fn prove(plan: &Plan, proofs: &[(usize, PathBuf, Ending)], options: &MatrixOptions) -> Result<Vec<LearnedPolicy>> {
    let mut policies = Vec::new();
    let mut loaded = Vec::new();
    let mut judged = Vec::new();
    for (m, file, ending) in proofs {
        let name = plan.modules[*m].name.clone();
        match Policy::from_file(file) {
            Ok(policy) => {
                let path = file.clone();
                policies.push((Entry { name, path }, policy));
                loaded.push((*m, file.clone(), ending.clone()));
            }
            Err(e) => judged.push(LearnedPolicy {
                module: name,
                file: Some(file.clone()),
                verdict: Verdict::Mismatch(vec![format!("the learned policy does not load: {e}")]),
            }),
        }
    }
    if loaded.is_empty() {
        return Ok(judged);
    }
    let proof_plan = Plan {
        modules: plan.modules.clone(),
        jobs: loaded.iter().enumerate().map(|(p, (m, _, _))| (*m, p)).collect(),
        policies,
        expectations: plan.expectations.clone(),
        expectations_path: plan.expectations_path.clone(),
    };
    let programs = load_programs(&proof_plan, &options.isolation)?;
    let quiet = MatrixOptions {
        progress: None,
        learn: None,
        ..options.clone()
    };
    let results = run_cells(&proof_plan, &programs, &quiet);
    judged.extend(
        loaded
            .iter()
            .zip(results)
            .map(|((m, file, ending), result)| LearnedPolicy {
                module: plan.modules[*m].name.clone(),
                file: Some(file.clone()),
                verdict: judge(ending.as_ref(), &result),
            }),
    );
    Ok(judged)
}

fn judge(ending: Option<&(String, u8)>, result: &CellResult) -> Verdict {
    let Some((status, code)) = ending else {
        return Verdict::Unchecked;
    };
    let mut differed = Vec::new();
    let (got_status, got_code) = (status_name(result), exit_code(result));
    if (got_status, got_code) != (status.as_str(), *code) {
        differed.push(format!(
            "under its learned policy it ended {got_status} (exit code {got_code}) where its reference cell ended {status} (exit code {code})"
        ));
    }
    if let CellResult::Ran(outcome) = result {
        let denied = outcome.uses.values().fold(0u64, |n, c| n.saturating_add(c.denied));
        if denied > 0 {
            differed.push(format!("{denied} use(s) were refused under its learned policy"));
        }
    }
    if differed.is_empty() {
        Verdict::Match
    } else {
        Verdict::Mismatch(differed)
    }
}
