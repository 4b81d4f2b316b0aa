//! Startup cost of `wasmcell run` on the `hello` guest, as a module (wasm32-wasip1) and as a
//! component (wasm32-wasip2), against a native `hello` process built from the same source and,
//! when a `wasmtime` binary is on PATH, against `wasmtime run`. A second section measures the
//! library path: one `Sandbox::load`, then many `run_program` calls on the loaded program.
//!
//! Run with `cargo bench --bench startup`. `WASMCELL_BENCH_RUNS=N` sets the number of timed runs
//! per command (default 30); each command first gets a few untimed warm-up runs.

use anyhow::{Context as _, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use wasmcell::{Policy, Sandbox, Status};

const WARM_UP: usize = 3;
const WASMCELL: &str = env!("CARGO_BIN_EXE_wasmcell");
const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");

fn main() -> ExitCode {
    match run_benchmarks() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_benchmarks() -> Result<()> {
    let runs = runs_from_env()?;
    let native = build_native_hello()?;
    let wasmtime = find_on_path("wasmtime");
    let guests = [
        ("module", wasmcell_artifacts::HELLO),
        ("component", wasmcell_artifacts::HELLO_COMPONENT),
    ];

    println!("\nprocess startup: {runs} timed runs per command after {WARM_UP} warm-up runs");
    println!(
        "{:<36} {:>10} {:>10} {:>10}",
        "command", "min ms", "median ms", "mean ms"
    );
    let native_stats = time_command("native hello", &native, &[], runs)?;
    let mut ratios = Vec::new();
    for (kind, guest) in guests {
        let ours = time_command(
            &format!("wasmcell run ({kind})"),
            Path::new(WASMCELL),
            &["run", guest],
            runs,
        )?;
        // wasmtime caches compiled code on disk by default and wasmcell does
        // not (yet), so it is timed both ways: as users run it, and with its
        // cache off, which isolates the sandbox's own start-up overhead.
        let (theirs, theirs_uncached) = match &wasmtime {
            Some(wasmtime) => (
                Some(time_command(
                    &format!("wasmtime run ({kind})"),
                    wasmtime,
                    &["run", guest],
                    runs,
                )?),
                Some(time_command(
                    &format!("wasmtime run -C cache=n ({kind})"),
                    wasmtime,
                    &["run", "-C", "cache=n", guest],
                    runs,
                )?),
            ),
            None => (None, None),
        };
        ratios.push((kind, ours, theirs, theirs_uncached));
    }
    if wasmtime.is_none() {
        println!("{:<36} wasmtime not installed; skipped", "wasmtime run");
    }
    println!();
    for (kind, ours, theirs, theirs_uncached) in ratios {
        let vs = |t: Option<Stats>| t.map_or("n/a".to_string(), |t| format!("{:.2}x", ratio(ours.median, t.median)));
        println!(
            "{kind:<10} wasmcell/native {:>7.1}x   wasmcell/wasmtime {:>6}   wasmcell/wasmtime-uncached {:>6}   (median)",
            ratio(ours.median, native_stats.median),
            vs(theirs),
            vs(theirs_uncached),
        );
    }

    println!("\nlibrary: Sandbox with the deny-all policy, one load, then {runs} x run_program (capture on)");
    println!("{:<12} {:>9} {:>12} {:>10}", "guest", "load ms", "median us", "runs/s");
    let sandbox = Sandbox::builder().policy(Policy::deny_all()).build()?;
    for (kind, guest) in guests {
        bench_library(&sandbox, kind, guest, runs)?;
    }
    Ok(())
}

/// Times `runs` runs of an already-loaded program, after one timed load (the compile).
fn bench_library(sandbox: &Sandbox, kind: &str, guest: &str, runs: usize) -> Result<()> {
    let start = Instant::now();
    let program = sandbox.load(guest)?;
    let load = start.elapsed();
    let mut times = Vec::with_capacity(runs);
    for i in 0..WARM_UP + runs {
        let start = Instant::now();
        let outcome = sandbox.run_program(&program, &[] as &[&str])?;
        let elapsed = start.elapsed();
        ensure!(
            outcome.status == Status::Exited(0),
            "library run of `{guest}` ended with {:?}",
            outcome.status
        );
        ensure!(
            outcome.stdout == b"hello from wasmcell\n",
            "library run of `{guest}` printed the wrong output"
        );
        if i >= WARM_UP {
            times.push(elapsed);
        }
    }
    let stats = Stats::from(times);
    println!(
        "{kind:<12} {:>9.1} {:>12.1} {:>10.0}",
        ms(load),
        stats.median.as_secs_f64() * 1e6,
        1.0 / stats.mean.as_secs_f64()
    );
    Ok(())
}

/// Spawns `program args` `WARM_UP + runs` times with output discarded, failing on any
/// unsuccessful exit, and prints one table row of the timed runs.
fn time_command(label: &str, program: &Path, args: &[&str], runs: usize) -> Result<Stats> {
    let mut times = Vec::with_capacity(runs);
    for i in 0..WARM_UP + runs {
        let start = Instant::now();
        let status = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("failed to spawn `{}`", program.display()))?;
        let elapsed = start.elapsed();
        ensure!(
            status.success(),
            "`{} {}` failed: {status}",
            program.display(),
            args.join(" ")
        );
        if i >= WARM_UP {
            times.push(elapsed);
        }
    }
    let stats = Stats::from(times);
    println!(
        "{label:<36} {:>10.2} {:>10.2} {:>10.2}",
        ms(stats.min),
        ms(stats.median),
        ms(stats.mean)
    );
    Ok(stats)
}

/// Builds `modules/src/bin/hello.rs` for the host, in release, into `target/bench-native`.
fn build_native_hello() -> Result<PathBuf> {
    let target_dir = Path::new(WORKSPACE).join("target/bench-native");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "wasmcell-modules", "--bin", "hello"])
        .current_dir(WORKSPACE)
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .context("failed to run cargo to build the native `hello`")?;
    if !status.success() {
        bail!("building the native `hello` failed: {status}");
    }
    Ok(target_dir
        .join("release")
        .join(format!("hello{}", std::env::consts::EXE_SUFFIX)))
}

fn runs_from_env() -> Result<usize> {
    match std::env::var("WASMCELL_BENCH_RUNS") {
        Ok(text) => match text.parse() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("WASMCELL_BENCH_RUNS must be a positive integer, not `{text}`"),
        },
        Err(_) => Ok(30),
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(&file))
        .find(|path| path.is_file())
}

struct Stats {
    min: Duration,
    median: Duration,
    mean: Duration,
}

impl From<Vec<Duration>> for Stats {
    fn from(mut times: Vec<Duration>) -> Stats {
        times.sort();
        let n = times.len();
        let median = if n % 2 == 1 {
            times[n / 2]
        } else {
            (times[n / 2 - 1] + times[n / 2]) / 2
        };
        let count = u32::try_from(n).expect("run count fits in u32");
        Stats {
            min: times[0],
            median,
            mean: times.iter().sum::<Duration>() / count,
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn ratio(ours: Duration, theirs: Duration) -> f64 {
    ours.as_secs_f64() / theirs.as_secs_f64()
}
