//! `wasmcell matrix`: every module under every policy, each cell checked
//! against a declared expectation, so that a policy change that widens or
//! breaks access fails CI.
//!
//! [`Matrix::run`] reads as its stages: `discover` (modules, policies and the
//! expectations file, in [`discover_modules`] / [`discover_policies`] and
//! [`Expectations::from_file`]) → `load_programs` (each module compiled once
//! per engine) → `run_cells` (in parallel, through the library) → `judge`
//! (each cell against its most specific expectation). The reports are
//! [`render_table`], [`render_json`] and [`render_junit`]. The matrix draws
//! nothing itself: a caller that wants a progress line passes
//! [`MatrixOptions::progress`].

mod cells;
mod discovery;
mod expectations;
mod learn;
mod render;
mod run;

pub use discovery::{Entry, discover_modules, discover_policies};
pub use expectations::{CellExpectation, EXPECTATIONS_FILE, Expectations, ExpectationsFile, ModuleSetup, glob_match};
pub use learn::LearnedPolicy;
pub use render::{render_json, render_junit, render_table, wall_line};

use crate::outcome::{EXIT_LOAD, EXIT_SANDBOX, Outcome, RequestError, RequestErrorKind, Status};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Bad input to the matrix (unreadable or invalid expectations, no modules
/// or policies, duplicate names), as a [`RequestError`] of kind
/// [`RequestErrorKind::MatrixInput`]: nothing ran, and `wasmcell matrix` exits 2.
fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    RequestError::new(RequestErrorKind::MatrixInput, msg).into()
}

/// How a cell ended.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "nearly every cell ran; boxing the outcome would cost an allocation per cell and change the public API"
)]
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

/// Told how far a matrix run has got, with the number of cells done so far
/// and the total: once with 0 when the first cell starts (discovery and
/// compiling are over), then from the worker threads after each cell.
pub type ProgressFn = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// Where each cell runs.
///
/// The library's default is [`Isolation::InProcess`]: a library does not
/// know where a worker binary is. The `wasmcell matrix` command runs a
/// worker per cell (`wasmcell worker`) unless given `--in-process`.
#[derive(Debug, Clone, Default)]
pub enum Isolation {
    /// Every cell in this process, on the matrix's threads, without the
    /// second wall (this process is not confined, and cannot be once per
    /// cell). Reports say so.
    #[default]
    InProcess,
    /// Each cell in its own worker process, confined for the cell's policy
    /// (see [`crate::worker`]); the modules are still compiled once, here,
    /// and each worker is handed the compiled code.
    Worker(crate::worker::Worker),
}

/// What to run.
#[derive(Clone, Default)]
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
    /// Called after each cell has run; `None` reports nothing. The matrix
    /// never writes to the terminal itself (the CLI draws its progress line
    /// with this).
    pub progress: Option<ProgressFn>,
    /// Where each cell runs; `jobs` cells (so `jobs` workers) at once.
    pub isolation: Isolation,
    /// A folder to learn one policy per module into, from all its cells
    /// (`DIR/<module>.toml`, see [`crate::learn`]), each then proven by a
    /// run of the module under it alone ([`Matrix::learned`]). `None`:
    /// nothing is learned.
    pub learn: Option<PathBuf>,
}

impl fmt::Debug for MatrixOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatrixOptions")
            .field("modules", &self.modules)
            .field("policies", &self.policies)
            .field("expect", &self.expect)
            .field("jobs", &self.jobs)
            .field("filter", &self.filter)
            .field("progress", &self.progress.as_ref().map(|_| "Fn(done, total)"))
            .field("isolation", &self.isolation)
            .field("learn", &self.learn)
            .finish()
    }
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
    /// Whether the cells ran inside this process ([`Isolation::InProcess`]),
    /// without the second wall; otherwise each cell's
    /// [`Outcome::wall`] says what its worker put up.
    pub in_process: bool,
    /// With [`MatrixOptions::learn`]: each module's learned policy and
    /// whether its proof held, by module name.
    pub learned: Vec<LearnedPolicy>,
}

impl Matrix {
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

    /// 0 when every checked cell matched and every learned policy that could
    /// be proven was, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        let unproven = self.learned.iter().any(|l| matches!(l.verdict, Verdict::Mismatch(_)));
        u8::from(self.mismatches().next().is_some() || unproven)
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

/// The code `wasmcell run` would have exited with.
fn exit_code(result: &CellResult) -> u8 {
    match result {
        CellResult::Ran(o) => o.exit_code(),
        CellResult::LoadFailed(_) => EXIT_LOAD,
        CellResult::Failed(_) => EXIT_SANDBOX,
    }
}

/// A few characters for the grid: `0`, `134`, `fuel`, `mem`, `time`, `out`,
/// `wall`, `deny:tcp`, `load`, `err`.
pub fn short(result: &CellResult) -> String {
    match result {
        CellResult::Ran(o) => match (&o.status, o.denials.first()) {
            (Status::WallStopped, _) => "wall".into(),
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
