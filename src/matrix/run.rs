//! Running a matrix: `discover` → `load_programs` → `run_cells` → `judge`.

use super::cells::{Plan, load_programs, run_cells};
use super::discovery::expectations_path;
use super::expectations::{Expected, Pattern};
use super::learn::{Target, learn};
use super::{
    Cell, CellResult, Entry, Expectations, Isolation, Matrix, MatrixOptions, ModuleSetup, Verdict, bad_input,
    discover_modules, discover_policies, exit_code, status_name,
};
use crate::outcome::Outcome;
use crate::policy::Policy;
use anyhow::Result;
use std::path::Path;

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
