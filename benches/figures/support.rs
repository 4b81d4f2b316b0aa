//! Helpers the figures share: checking outcomes, building native guests, scratch directories
//! and reading `/proc`.

use crate::WORKSPACE;
use anyhow::{Context as _, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;
use wasmcell::{Outcome, Status};

pub(crate) fn check_outcome(what: &str, outcome: &Outcome, status: Status, stdout: &[u8]) -> Result<()> {
    ensure!(
        outcome.status == status && outcome.stdout == stdout,
        "{what}ended with {:?} (trap {:?}) and printed {:?}; expected {status:?} and {:?}",
        outcome.status,
        outcome.trap,
        String::from_utf8_lossy(&outcome.stdout),
        String::from_utf8_lossy(stdout)
    );
    Ok(())
}

/// Builds the named guests of `modules/` for the host, in release, into `target/bench-native`;
/// returns the directory holding the binaries.
pub(crate) fn build_native(bins: &[&str]) -> Result<PathBuf> {
    let target_dir = Path::new(WORKSPACE).join("target/bench-native");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--quiet", "--release", "-p", "wasmcell-modules"])
        .current_dir(WORKSPACE)
        .env("CARGO_TARGET_DIR", &target_dir);
    for bin in bins {
        command.args(["--bin", bin]);
    }
    let status = command
        .status()
        .context("failed to run cargo to build the native guests")?;
    if !status.success() {
        bail!("building the native {} failed: {status}", bins.join(", "));
    }
    Ok(target_dir.join("release"))
}

pub(crate) fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(exe(name)))
        .find(|path| path.is_file())
}

/// A directory under `target/` (or another parent) that does not exist yet, removed again on
/// drop.
pub(crate) struct ScratchDir {
    pub(crate) path: PathBuf,
}

impl ScratchDir {
    pub(crate) fn new(prefix: &str) -> Result<ScratchDir> {
        ScratchDir::new_in(&Path::new(WORKSPACE).join("target"), prefix)
    }

    /// As [`ScratchDir::new`], in `parent` rather than `target/`.
    pub(crate) fn new_in(parent: &Path, prefix: &str) -> Result<ScratchDir> {
        let path = parent.join(format!("{prefix}-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("failed to clear `{}`", path.display()))?;
        }
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub(crate) fn count_files(dir: &Path, suffix: &str) -> Result<usize> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("failed to list `{}`", dir.display()))?;
    let mut count = 0;
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to list `{}`", dir.display()))?;
        if entry.file_name().to_string_lossy().ends_with(suffix) {
            count += 1;
        }
    }
    Ok(count)
}

/// The first line of `path` that `pick` accepts, trimmed.
pub(crate) fn read_trimmed(path: &str, pick: impl Fn(&str) -> bool) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find(|l| pick(l)).map(|l| l.trim().to_string())
}

pub(crate) fn load_average() -> String {
    read_trimmed("/proc/loadavg", |_| true)
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The corpus program `name` (`scripts/corpus path NAME`): fetched at a pinned version and
/// checked against its SHA-256, cached under `target/corpus/`.
pub(crate) fn corpus(name: &str) -> Result<PathBuf> {
    let out = Command::new("python3")
        .arg(Path::new(WORKSPACE).join("scripts/corpus"))
        .args(["path", name])
        .output()
        .context("failed to run `python3 scripts/corpus`")?;
    ensure!(
        out.status.success(),
        "`scripts/corpus path {name}` failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim_end()))
}
