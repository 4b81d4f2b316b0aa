//! `wasmcell matrix`: every module under every policy, judged against
//! expectations, with a progress line on a terminal.

use crate::app::{eprint_line, print_stdout};
use anyhow::{Context as _, Result};
use clap::Parser;
use std::path::PathBuf;

/// Output formats of `wasmcell matrix`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatrixFormat {
    /// The grid, colored on a terminal, then the mismatches.
    Table,
    /// Every cell with its outcome report.
    Json,
    /// JUnit XML, one test case per cell, for CI systems.
    Junit,
}

const MATRIX_EXAMPLES: &str = "\
Examples:
  wasmcell matrix --modules target/wasm32-wasip1/release --policies policies
  wasmcell matrix --modules a.wasm --modules b.wasm --policies policies/tight.toml --expect e.toml
  wasmcell matrix --modules guests/ --policies policies --filter 'fs_*' --format junit

Exit codes: 0 every checked cell matched; 1 a cell did not match; 2 bad input (nothing ran).";

/// Run every module under every policy and check each cell against expectations.
///
/// Each cell runs in its own worker process (`wasmcell worker`), confined by
/// the second wall for its policy, several at once; modules are compiled
/// once, here, and each worker is handed the compiled code. `--in-process`
/// runs the cells inside this process instead, without the second wall. Expectations are TOML: `[[module]]` entries give a module's
/// arguments and stdin, `[[cell]]` entries name a module and a policy (glob
/// patterns allowed; the most specific entry wins, the later one on a tie) and
/// expect any of status, exit-code, stdout-contains, stdout-matches,
/// stderr-contains, stderr-matches, fuel-used-at-most and denial. A cell no
/// entry names is reported as unchecked, never as passed.
#[derive(Parser, Debug)]
#[command(after_help = MATRIX_EXAMPLES)]
pub struct MatrixCommand {
    /// Modules: `.wasm`/`.wat` files, or directories holding them. Repeatable.
    #[arg(long, value_name = "DIR|FILE", required = true, num_args = 1..)]
    pub modules: Vec<PathBuf>,

    /// Policies: `.toml` files, or directories holding them (their
    /// `expectations.toml` is not a policy). Repeatable.
    #[arg(long, value_name = "DIR|FILE", required = true, num_args = 1..)]
    pub policies: Vec<PathBuf>,

    /// Expectations file. Default: `expectations.toml` in the first policy directory, if present.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,

    /// Cells to run at once. Default: one per CPU.
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub jobs: usize,

    /// Only cells whose `module/policy`, module or policy name matches this glob.
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,

    /// Report format.
    #[arg(long, value_enum, default_value_t = MatrixFormat::Table)]
    pub format: MatrixFormat,

    /// Write the report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Run every cell inside this process instead of each in its own worker process.
    ///
    /// Faster, but without the second wall: this process is not confined, so
    /// the cells run with only the first wall around them. The report says
    /// `wall: off`.
    #[arg(long)]
    pub in_process: bool,

    /// Learn one policy per module from all its cells into DIR (`DIR/<module>.toml`), then prove each.
    ///
    /// Each policy allows what the module's cells did and nothing they did
    /// not (see `wasmcell learn`). It is proven by running the module under
    /// it alone, with its arguments and stdin: it must end as the module's
    /// cells with nothing refused ended, with nothing refused, or the matrix
    /// exits 1. DIR may not be inside a grant of any policy.
    #[arg(long, value_name = "DIR")]
    pub learn: Option<PathBuf>,
}

impl MatrixCommand {
    /// Runs the matrix, writes the report, and returns 0 or 1.
    ///
    /// # Errors
    ///
    /// A [`wasmcell::RequestError`] ([`wasmcell::RequestErrorKind::MatrixInput`]) or a [`wasmcell::PolicyError`] for bad input.
    pub fn execute(self) -> Result<u8> {
        let isolation = match self.in_process {
            true => wasmcell::matrix::Isolation::InProcess,
            // Each cell in a worker started from this very binary.
            false => wasmcell::matrix::Isolation::Worker(wasmcell::worker::Worker::wasmcell(
                std::env::current_exe()
                    .context("cannot find this binary to start workers from; run with --in-process")?,
            )),
        };
        let progress = MatrixProgress::new();
        let options = wasmcell::matrix::MatrixOptions {
            modules: self.modules,
            policies: self.policies,
            expect: self.expect,
            jobs: self.jobs,
            filter: self.filter,
            progress: Some(progress.callback()),
            isolation,
            learn: self.learn,
        };
        let matrix = wasmcell::matrix::Matrix::run(&options);
        progress.finish();
        let matrix = matrix?;
        let colour =
            self.output.is_none() && anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never;
        let report = match self.format {
            MatrixFormat::Table => wasmcell::matrix::render_table(&matrix, colour),
            MatrixFormat::Json => wasmcell::matrix::render_json(&matrix),
            MatrixFormat::Junit => wasmcell::matrix::render_junit(&matrix),
        };
        match &self.output {
            Some(path) => {
                std::fs::write(path, report).with_context(|| format!("failed to write `{}`", path.display()))?;
                let (ok, bad, unchecked) = matrix.counts();
                eprint_line(format_args!(
                    "wasmcell matrix: {ok} matched, {bad} mismatched, {unchecked} unchecked; report in {}",
                    path.display()
                ));
                eprint_line(format_args!("{}", wasmcell::matrix::wall_line(&matrix)));
            }
            None => print_stdout(&report).context("failed to write the matrix report to stdout")?,
        }
        Ok(matrix.exit_code())
    }
}

/// The `wasmcell matrix: 12/203 cells` line on stderr: drawn only on a
/// terminal, and only once the cells have run for more than a moment, so that
/// quick runs and CI logs stay quiet. indicatif rate-limits the redraws from
/// the worker threads, fits the line to the terminal, ignores a closed stderr
/// and clears the line at the end.
struct MatrixProgress {
    bar: indicatif::ProgressBar,
    /// When the first cell started.
    start: std::sync::OnceLock<std::time::Instant>,
    shown: std::sync::atomic::AtomicBool,
}

impl MatrixProgress {
    const QUIET_FOR: std::time::Duration = std::time::Duration::from_millis(500);

    fn new() -> std::sync::Arc<MatrixProgress> {
        let bar = indicatif::ProgressBar::hidden();
        bar.set_style(
            indicatif::ProgressStyle::with_template("wasmcell matrix: {pos}/{len} cells")
                .expect("the progress template is valid"),
        );
        std::sync::Arc::new(MatrixProgress {
            bar,
            start: std::sync::OnceLock::new(),
            shown: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The matrix's progress hook. The bar stays hidden until
    /// [`Self::QUIET_FOR`] after the first cell started; then it draws to
    /// stderr, which indicatif does only when stderr is a terminal.
    fn callback(self: &std::sync::Arc<Self>) -> wasmcell::matrix::ProgressFn {
        let this = self.clone();
        std::sync::Arc::new(move |done, total| {
            let start = *this.start.get_or_init(|| {
                this.bar.set_length(total as u64);
                std::time::Instant::now()
            });
            this.bar.set_position(done as u64);
            if start.elapsed() >= Self::QUIET_FOR && !this.shown.swap(true, std::sync::atomic::Ordering::Relaxed) {
                this.bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                this.bar.tick();
            }
        })
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
