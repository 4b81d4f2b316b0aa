//! Figure 5: latency of a short run while 0, 10 or 1,000 other sandboxes are alive.

use crate::memory::{ProcStatus, Sleepers, settle, sleeper_sandbox};
use crate::stats::{percentile, ratio, us};
use crate::support::check_outcome;
use crate::{HELLO_OUTPUT, Settings, Target, WARM_UP_RUNS};
use anyhow::Result;
use std::time::{Duration, Instant};
use wasmcell::{Engine, EngineConfig, Policy, Program, RunOptions, Sandbox, Status};

/// Other sandboxes alive during the latency figure's probes.
const LATENCY_LOADS: [usize; 3] = [0, 10, 1_000];
/// The latency samples of each load are taken in this many slices, in turn with the others.
const LATENCY_SLICES: usize = 3;

pub(crate) fn bench_latency(settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
    let samples = settings.latency_samples();
    println!(
        "\n== 5. Latency of one hello run (run_with_async, sequential, on the same runtime and engine) \
         while other sandboxes are alive: {samples} samples per load in {LATENCY_SLICES} slices"
    );
    println!(
        "\"alive\" = limits_sleep_forever guests asleep in poll_oneoff, each holding an instance, a fiber and a \
         tokio timer; none wakes until cancelled (no existing guest wakes periodically without computing)"
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let engine = Engine::new(EngineConfig::default())?;
    let sleeper_box = sleeper_sandbox(engine.clone())?;
    let sleeper = sleeper_box.load(wasmcell_artifacts::LIMITS_SLEEP_FOREVER)?;
    let hello_box = Sandbox::builder().engine(engine).policy(Policy::deny_all()).build()?;
    let hello = hello_box.load(wasmcell_artifacts::HELLO)?;

    // The loads take turns, a slice of the samples each, so that load from other processes
    // falls on all of them alike.
    let per_slice = samples.div_ceil(LATENCY_SLICES);
    let mut latencies = vec![Vec::with_capacity(per_slice * LATENCY_SLICES); LATENCY_LOADS.len()];
    for slice in 0..LATENCY_SLICES {
        for (load, latencies) in LATENCY_LOADS.into_iter().zip(&mut latencies) {
            let sleepers = Sleepers::start(&rt, &sleeper_box, &sleeper, load);
            settle(ProcStatus::read()?.rss_kib, Duration::from_millis(500))?;
            let warm_up = if slice == 0 { WARM_UP_RUNS } else { 0 };
            latencies.extend(probe_latency(&rt, &hello_box, &hello, warm_up, per_slice)?);
            sleepers.cancel_and_check(&rt, Duration::from_secs(30))?;
        }
    }
    println!(
        "{:<16} {:>9} {:>9} {:>9}",
        "other sandboxes", "p50 us", "p99 us", "max us"
    );
    let mut results = Vec::new();
    for (load, mut latencies) in LATENCY_LOADS.into_iter().zip(latencies) {
        latencies.sort();
        let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
        let max = *latencies.last().expect("at least one sample");
        println!("{load:<16} {:>9.1} {:>9.1} {:>9.1}", us(p50), us(p99), us(max));
        results.push((load, p50, p99));
    }
    let find = |load| {
        results
            .iter()
            .find(|(l, _, _)| *l == load)
            .map(|&(_, p50, p99)| (p50, p99))
            .expect("measured above")
    };
    let ((p50_10, p99_10), (p50_1000, p99_1000)) = (find(10), find(1_000));
    println!(
        "1,000 vs 10 others: p50 {:.2}x, p99 {:.2}x",
        ratio(p50_1000, p50_10),
        ratio(p99_1000, p99_10)
    );
    summary.push(Target::new(
        "5 latency p50, 10 -> 1,000 others",
        "none set",
        format!(
            "{:.1} -> {:.1} us ({:.2}x)",
            us(p50_10),
            us(p50_1000),
            ratio(p50_1000, p50_10)
        ),
        None,
    ));
    summary.push(Target::new(
        "5 latency p99, 10 -> 1,000 others",
        "none set",
        format!(
            "{:.1} -> {:.1} us ({:.2}x)",
            us(p99_10),
            us(p99_1000),
            ratio(p99_1000, p99_10)
        ),
        None,
    ));
    Ok(())
}

/// Latencies of `samples` sequential hello runs in a task on `rt`, after `warm_up` untimed ones.
fn probe_latency(
    rt: &tokio::runtime::Runtime,
    sandbox: &Sandbox,
    program: &Program,
    warm_up: usize,
    samples: usize,
) -> Result<Vec<Duration>> {
    let (sandbox, program) = (sandbox.clone(), program.clone());
    rt.block_on(rt.spawn(async move {
        let mut latencies = Vec::with_capacity(samples);
        for i in 0..warm_up + samples {
            let start = Instant::now();
            let outcome = sandbox
                .run_with_async(&program, &[] as &[&str], RunOptions::new())
                .await?;
            let elapsed = start.elapsed();
            check_outcome("the latency probe ", &outcome, Status::Exited(0), HELLO_OUTPUT)?;
            if i >= warm_up {
                latencies.push(elapsed);
            }
        }
        Ok(latencies)
    }))?
}
