//! A small job-runner host: runs a batch of untrusted guests concurrently
//! under one policy and prints a summary, the way a grader or a serverless
//! worker would embed wasmcell.
//!
//! ```sh
//! cargo build --release -p wasmcell-modules --target wasm32-wasip1
//! cargo run --example job_runner -- --jobs 8 --repeat 5 policies/tight.toml target/wasm32-wasip1/release
//! ```
//!
//! What it shows:
//! - one pooling [`Engine`] sized for the batch's concurrency, shared by all jobs;
//! - each guest compiled once ([`Sandbox::load`]), then run many times;
//! - async runs on tokio, at most `--jobs` at once;
//! - one [`CancelHandle`] for the whole batch, fired by Ctrl-C;
//! - every ending, including limits and refusals, read from the [`Outcome`].

use anyhow::{Context as _, Result, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmcell::{
    Allocator, CancelHandle, Engine, EngineConfig, Outcome, Policy, PoolingConfig, Program, RunOptions, Sandbox, Status,
};

const USAGE: &str = "usage: job_runner [--jobs N] [--repeat K] POLICY GUEST.wasm|DIR...";

struct Args {
    jobs: usize,
    repeat: usize,
    policy: PathBuf,
    guests: Vec<PathBuf>,
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let policy = Policy::from_file(&args.policy)?;

    // A pool with a slot per concurrent job: instantiation reuses slots
    // instead of mapping fresh memory for every run.
    let engine = Engine::new(EngineConfig {
        allocator: Allocator::Pooling(PoolingConfig {
            max_memory: policy.limits().memory.value,
            ..PoolingConfig::new(u32::try_from(args.jobs)?)
        }),
        ..EngineConfig::for_policy(&policy)
    })?;
    let sandbox = Sandbox::builder().engine(engine).policy(policy).build()?;

    let mut programs = Vec::new();
    for path in guest_files(&args.guests)? {
        match sandbox.load(&path) {
            Ok(program) => programs.push(program),
            Err(err) => eprintln!("skipped: {err}"),
        }
    }
    if programs.is_empty() {
        bail!("no guest could be loaded; {USAGE}");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let results = runtime.block_on(run_batch(&sandbox, &programs, args.jobs, args.repeat))?;
    print_summary(&results, started.elapsed(), args.jobs);
    Ok(())
}

/// Runs every program `repeat` times, at most `jobs` at once; Ctrl-C cancels
/// whatever is still running.
async fn run_batch(
    sandbox: &Sandbox,
    programs: &[Program],
    jobs: usize,
    repeat: usize,
) -> Result<Vec<(String, Outcome)>> {
    let cancel = CancelHandle::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("cancelling the batch");
            on_ctrl_c.cancel();
        }
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(jobs));
    let mut tasks = Vec::new();
    for _ in 0..repeat {
        for program in programs {
            let (sandbox, program, cancel, slots) = (sandbox.clone(), program.clone(), cancel.clone(), slots.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = slots.acquire_owned().await?;
                let options = RunOptions::new().cancel(&cancel);
                let outcome = sandbox.run_with_async(&program, &[] as &[&str], options).await?;
                anyhow::Ok((program.name().to_string(), outcome))
            }));
        }
    }
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.context("a job panicked")??);
    }
    Ok(results)
}

fn print_summary(results: &[(String, Outcome)], elapsed: Duration, jobs: usize) {
    let mut by_guest: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
    for (name, outcome) in results {
        by_guest.entry(name).or_default().push(outcome);
    }
    println!(
        "{:<28} {:>5}  {:<22} {:>9} {:>10} {:>8}",
        "guest", "runs", "ended", "median ms", "peak KiB", "denials"
    );
    for (name, outcomes) in &by_guest {
        let mut endings: BTreeMap<String, usize> = BTreeMap::new();
        for o in outcomes {
            *endings.entry(ending(o)).or_default() += 1;
        }
        let endings: Vec<String> = endings.iter().map(|(e, n)| format!("{e}×{n}")).collect();
        let mut walls: Vec<Duration> = outcomes.iter().map(|o| o.elapsed).collect();
        walls.sort();
        let peak = outcomes.iter().map(|o| o.peak_memory_bytes).max().unwrap_or(0);
        let denials: usize = outcomes.iter().map(|o| o.denials.len()).sum();
        println!(
            "{name:<28} {:>5}  {:<22} {:>9.2} {:>10} {:>8}",
            outcomes.len(),
            endings.join(" "),
            walls[walls.len() / 2].as_secs_f64() * 1e3,
            peak / 1024,
            denials
        );
    }
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, o) in results {
        *totals.entry(o.status.name()).or_default() += 1;
    }
    let totals: Vec<String> = totals.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!(
        "\nbatch: {} jobs ({}) in {:.2} s, {jobs} at a time, {:.0} jobs/s",
        results.len(),
        totals.join(", "),
        elapsed.as_secs_f64(),
        results.len() as f64 / elapsed.as_secs_f64()
    );
}

/// `exit 0`, `timeout`, `fuel-exhausted`, ...
fn ending(outcome: &Outcome) -> String {
    match outcome.status {
        Status::Exited(code) => format!("exit {code}"),
        other => other.name().to_string(),
    }
}

/// The `.wasm` files named, or found directly inside the directories named.
fn guest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("failed to list `{}`", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn parse_args() -> Result<Args> {
    let mut jobs = 4;
    let mut repeat = 1;
    let mut rest = Vec::new();
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        let mut number = |flag: &str| -> Result<usize> {
            let value = argv.next().with_context(|| format!("{flag} needs a number; {USAGE}"))?;
            match value.parse() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("{flag} must be a positive number, not `{value}`"),
            }
        };
        match arg.as_str() {
            "--jobs" => jobs = number("--jobs")?,
            "--repeat" => repeat = number("--repeat")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => rest.push(PathBuf::from(arg)),
        }
    }
    let Some((policy, guests)) = rest.split_first() else {
        bail!("{USAGE}");
    };
    if guests.is_empty() {
        bail!("name at least one guest or directory; {USAGE}");
    }
    Ok(Args {
        jobs,
        repeat,
        policy: policy.clone(),
        guests: guests.to_vec(),
    })
}
