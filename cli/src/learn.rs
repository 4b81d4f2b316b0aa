//! `wasmcell learn`: runs the guest once under the policy and flags given
//! (as `run` does, behind the second wall), writes the narrowest policy that
//! allows what it did, then runs it again under that policy alone and fails
//! unless the run ends the same way with nothing refused.

use crate::app::eprint_line;
use crate::app::usage_error;
use crate::run::{Ran, RunCommand, RunMode, check_outside_grants};
use anyhow::{Context as _, Result, bail};
use clap::Parser;
use std::path::{Path, PathBuf};
use wasmcell::learn::{Learner, Observed};
use wasmcell::{HostFile, Policy, sanitize};

/// What to do with a learned policy a guest could write.
const KEEP: &str = "keep learned policies outside what the guest is granted";

const LEARN_EXAMPLES: &str = "\
Examples:
  wasmcell learn --output rg.toml --ro-dir src::/src rg.wasm TODO /src
  wasmcell learn --output rg.toml --merge rg.toml --ro-dir src::/src rg.wasm -l fn /src";

/// Learn the smallest policy that lets a program do what it did, and prove it.
///
/// Runs MODULE once under --policy and the grants given as flags (the
/// candidate grants: learning never grants more than they do), recording
/// every capability use; writes the narrowest policy that allows what
/// succeeded to --output, each choice explained in a comment; then runs
/// MODULE again under the written policy alone (output not shown) and exits
/// 1 unless it ends the same way with nothing refused. Flags after MODULE
/// are the guest's: put --output before it.
#[derive(Parser, Debug)]
#[command(after_help = LEARN_EXAMPLES)]
pub struct LearnCommand {
    /// Where to write the learned policy (created or replaced; not inside a read-write grant).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,

    /// An earlier learned policy whose grants this run's uses are added to (may be --output itself).
    #[arg(long, value_name = "FILE")]
    pub merge: Option<PathBuf>,

    /// The candidate policy, grants, limits, module and arguments, as for `run`.
    #[command(flatten)]
    pub run: RunCommand,
}

impl LearnCommand {
    /// Learns, writes, proves.
    ///
    /// # Errors
    ///
    /// Policy, load and sandbox errors; an output or merged file a guest
    /// could write; a run that could not be learned from.
    pub fn execute(self) -> Result<u8> {
        let candidate = self.run.resolve_policy()?;
        let output = HostFile::resolve(&candidate, &self.output, "--output")?;
        check_out_of_reach(&candidate, output.path(), "--output")?;
        let merged = match &self.merge {
            Some(path) => Some(read_merged(&candidate, path)?),
            None => None,
        };
        if let Some(merged) = &merged {
            check_out_of_reach(merged, output.path(), "--output")?;
        }
        // The pin is of the file as it is before the run: the guest cannot
        // choose it, whatever its run reports.
        let (module, _) = self.run.module_and_args()?;
        let digest = wasmcell::learn::module_sha256(&module, candidate.limits().module_size.value)
            .with_context(|| format!("cannot read `{}`", module.display()))?;
        let mode = RunMode {
            record_uses: true,
            quiet: false,
        };
        let mut observed = match self.run.run_under(candidate.clone(), None, mode)? {
            Ran::Child(code) => return Ok(code),
            Ran::Ended { report, .. } => observed(report, "learning")?,
        };
        observed.module_sha256 = digest;
        let name = module
            .file_name()
            .map_or_else(|| module.display().to_string(), |n| n.to_string_lossy().into_owned());
        let mut learner = Learner::new();
        learner.add_run(&name, &candidate, &observed)?;
        if let Some(merged) = &merged {
            learner.add_policy(merged)?;
        }
        let dir = output.path().parent().map(Path::to_path_buf).unwrap_or_default();
        output.write(learner.write(&dir).as_bytes())?;
        for (kind, target, rule) in learner.refused() {
            eprint_line(format_args!(
                "wasmcell: learn: refused while learning, not granted: {kind} {}: {}",
                sanitize(target),
                sanitize(rule)
            ));
        }
        eprint_line(format_args!(
            "wasmcell: learn: wrote {}; checking it",
            output.path().display()
        ));
        self.prove(output.path(), &observed)
    }

    /// Runs MODULE again under the written policy alone, quietly, and
    /// compares: 0 when it ends the same way with nothing refused, else 1
    /// saying what differed.
    fn prove(&self, written: &Path, learned: &Observed) -> Result<u8> {
        let policy = Policy::from_file(written)
            .with_context(|| format!("the learned policy `{}` does not load", written.display()))?;
        check_out_of_reach(&policy, written, "--output")?;
        let mut again = self.run.clone();
        again.report = None;
        again.report_fd = None;
        again.audit = None;
        let mode = RunMode {
            record_uses: false,
            quiet: true,
        };
        let proved = match again.run_under(policy, None, mode)? {
            Ran::Child(code) => return Ok(code),
            Ran::Ended { report, .. } => observed(report, "checking")?,
        };
        let mut differed = Vec::new();
        if (proved.status.as_str(), proved.exit_code) != (learned.status.as_str(), learned.exit_code) {
            differed.push(format!(
                "it ended {} (exit code {}) where the learning run ended {} (exit code {})",
                proved.status, proved.exit_code, learned.status, learned.exit_code
            ));
        }
        if proved.denied > 0 {
            differed.push(format!("{} use(s) were refused", proved.denied));
        }
        if differed.is_empty() {
            eprint_line(format_args!(
                "wasmcell: learn: the learned policy runs it the same way ({}, exit code {}) with nothing refused",
                proved.status, proved.exit_code
            ));
            return Ok(0);
        }
        eprint_line(format_args!(
            "wasmcell: learn: under the learned policy `{}`, {}; see the refusals with `wasmcell run -v --policy {} ...`",
            written.display(),
            differed.join(", and "),
            written.display()
        ));
        Ok(1)
    }
}

/// What a finished run's report says, or why it says nothing.
fn observed(report: Option<serde_json::Value>, what: &str) -> Result<Observed> {
    let Some(report) = report else {
        bail!("the {what} run made no report (it was stopped before it ended); nothing could be learned");
    };
    Ok(Observed::from_report(&report)?)
}

/// Reads the earlier learned policy `--merge` names: not a link itself
/// (its folder is resolved as any path is), and out of the guest's reach.
fn read_merged(candidate: &Policy, path: &Path) -> Result<Policy> {
    let meta = std::fs::symlink_metadata(path).with_context(|| format!("cannot read --merge `{}`", path.display()))?;
    if meta.file_type().is_symlink() {
        return Err(usage_error(format!(
            "--merge `{}` is a symbolic link; name the learned policy itself",
            path.display()
        )));
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let folder = std::fs::canonicalize(folder).with_context(|| format!("cannot resolve `{}`", path.display()))?;
    let resolved = match path.file_name() {
        Some(name) => folder.join(name),
        None => folder,
    };
    check_out_of_reach(candidate, &resolved, "--merge")?;
    Policy::from_file(&resolved).with_context(|| format!("failed to read --merge `{}`", path.display()))
}

/// Refuses a learned policy a guest could read or change: one inside a
/// grant of `policy` (a learned policy names the entries a grant hides, and
/// a later run trusts it), as the flag `flag` names it.
fn check_out_of_reach(policy: &Policy, path: &Path, flag: &str) -> Result<()> {
    check_outside_grants(policy, path, flag, KEEP)?;
    for grant in policy.dirs() {
        let granted = if grant.rules.files.is_empty() {
            path.starts_with(&grant.host)
        } else {
            grant.rules.files.iter().any(|f| path == grant.host.join(&f.host))
        };
        if granted {
            return Err(usage_error(format!(
                "{flag} `{}` is inside the grant at `{}` (host `{}`), where the guest could read it; {KEEP}",
                path.display(),
                grant.guest,
                grant.host.display()
            )));
        }
    }
    Ok(())
}
