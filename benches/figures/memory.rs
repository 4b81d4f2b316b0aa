//! Figure 4: resident memory per sandbox with 10,000 guests asleep in a host call, then
//! cancelling all of them through one handle.

use crate::stats::ms;
use crate::support::{check_outcome, read_trimmed};
use crate::{SLEEPING_OUTPUT, Target};
use anyhow::{Context as _, Result, bail};
use std::time::{Duration, Instant};
use wasmcell::{
    Allocator, CancelHandle, Engine, EngineConfig, Outcome, Policy, PoolingConfig, Program, RunOptions, Sandbox, Status,
};

/// Sandboxes asleep at once in the memory figure.
const SLEEPERS: usize = 10_000;

pub(crate) fn bench_memory(summary: &mut Vec<Target>) -> Result<()> {
    println!(
        "\n== 4. Memory: {SLEEPERS} concurrent sandboxes asleep in poll_oneoff (limits_sleep_forever), one engine"
    );
    println!(
        "open files limit {}; vm.max_map_count {}",
        read_trimmed("/proc/self/limits", |l| l.starts_with("Max open files"))
            .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_string())
            .unwrap_or_else(|| "?".into()),
        read_trimmed("/proc/sys/vm/max_map_count", |_| true).unwrap_or_else(|| "?".into())
    );
    try_pooling_for_sleepers();

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let sandbox = sleeper_sandbox(Engine::new(EngineConfig::default())?)?;
    let program = sandbox.load(wasmcell_artifacts::LIMITS_SLEEP_FOREVER)?;
    // One sleeper first, so one-time costs (runtime threads, the module's memory image, WASI's
    // statics) are in the baseline rather than spread over the 10,000.
    let first = Sleepers::start(&rt, &sandbox, &program, 1);
    settle(ProcStatus::read()?.rss_kib, Duration::from_millis(500))?;
    first.cancel_and_check(&rt, Duration::from_secs(10))?;
    let before = ProcStatus::read()?;

    let start = Instant::now();
    let sleepers = Sleepers::start(&rt, &sandbox, &program, SLEEPERS);
    let spawned = start.elapsed();
    let after = settle(before.rss_kib, Duration::from_secs(2))?;
    let settled = start.elapsed();
    println!(
        "spawned in {:.0} ms, RSS settled after {:.1} s",
        ms(spawned),
        settled.as_secs_f64()
    );
    let growth_kib = after.rss_kib.saturating_sub(before.rss_kib);
    println!(
        "RSS {:.1} MiB -> {:.1} MiB; virtual {:.1} GiB -> {:.1} GiB; memory mappings {} -> {}; threads {} -> {}",
        before.rss_kib as f64 / 1024.0,
        after.rss_kib as f64 / 1024.0,
        before.vm_kib as f64 / (1 << 20) as f64,
        after.vm_kib as f64 / (1 << 20) as f64,
        before.maps,
        after.maps,
        before.threads,
        after.threads
    );

    let limit = Duration::from_secs(60);
    let report = sleepers.cancel_and_collect(&rt, limit);
    // A run that failed never reached its sleep and held nothing when RSS was read.
    let asleep = report.as_expected;
    let per_sandbox = growth_kib as f64 / asleep.max(1) as f64;
    println!("{per_sandbox:.1} KiB per sandbox ({asleep} asleep when measured)");
    summary.push(Target::new(
        "4 memory per idle sandbox (10,000)",
        "< 256 KiB",
        format!("{per_sandbox:.1} KiB ({asleep} of {SLEEPERS} asleep)"),
        Some(per_sandbox < 256.0),
    ));
    summary.push(Target::new(
        "4 cancel 10,000 sleepers",
        "all Cancelled, none stuck",
        format!(
            "{asleep}/{SLEEPERS} in {:.0} ms, {} stuck",
            ms(report.elapsed),
            report.stuck
        ),
        Some(report.is_clean()),
    ));
    let max_maps = read_trimmed("/proc/sys/vm/max_map_count", |_| true).and_then(|l| l.parse::<u64>().ok());
    let near_map_limit = max_maps.is_some_and(|max| after.maps * 10 >= max * 9);
    if near_map_limit && report.is_clean() {
        println!(
            "note: {} memory mappings of vm.max_map_count {} in use; a few more sandboxes and mmap fails",
            after.maps,
            max_maps.unwrap_or(0)
        );
    }
    let elapsed = report.check().with_context(|| {
        if near_map_limit {
            format!(
                "the process held {} memory mappings against vm.max_map_count {} (about {:.1} per sandbox): \
                 mmap fails past the limit; raise it with `sysctl vm.max_map_count=262144`",
                after.maps,
                max_maps.unwrap_or(0),
                after.maps.saturating_sub(before.maps) as f64 / asleep.max(1) as f64
            )
        } else {
            "not every sleeper ended as cancelled".to_string()
        }
    })?;
    println!(
        "cancelled all {SLEEPERS} through one CancelHandle in {:.0} ms: every one Ok(Outcome) with \
         Status::Cancelled and stdout \"sleeping\\n\"; none lost or stuck (limit {} s)",
        ms(elapsed),
        limit.as_secs()
    );
    Ok(())
}

/// Reports whether a pooling engine with a slot per sleeper can even be created.
fn try_pooling_for_sleepers() {
    let config = EngineConfig {
        allocator: Allocator::Pooling(PoolingConfig::new(SLEEPERS as u32)),
        ..EngineConfig::default()
    };
    match Engine::new(config) {
        Ok(engine) => {
            let vm = ProcStatus::read().map(|s| s.vm_kib).unwrap_or(0);
            println!(
                "pooling with max_runs {SLEEPERS}: engine created ({:.1} TiB virtual); not used, on-demand measured",
                vm as f64 / (1u64 << 30) as f64
            );
            drop(engine);
        }
        Err(err) => println!("pooling with max_runs {SLEEPERS}: refused ({err:#}); on-demand measured"),
    }
}

/// A sandbox whose guests may sleep for an hour.
pub(crate) fn sleeper_sandbox(engine: Engine) -> Result<Sandbox> {
    Sandbox::builder()
        .engine(engine)
        .policy(Policy::from_toml("[limits]\ntimeout = \"1h\"", ".")?)
        .build()
}

/// Sleeper runs as tasks on a runtime, all cancelled by one handle.
pub(crate) struct Sleepers {
    cancel: CancelHandle,
    tasks: Vec<tokio::task::JoinHandle<Result<Outcome>>>,
}

impl Sleepers {
    pub(crate) fn start(rt: &tokio::runtime::Runtime, sandbox: &Sandbox, program: &Program, count: usize) -> Sleepers {
        let cancel = CancelHandle::new();
        let tasks = (0..count)
            .map(|_| {
                let (sandbox, program, cancel) = (sandbox.clone(), program.clone(), cancel.clone());
                rt.spawn(async move {
                    sandbox
                        .run_with_async(&program, &[] as &[&str], RunOptions::new().cancel(&cancel))
                        .await
                })
            })
            .collect();
        Sleepers { cancel, tasks }
    }

    /// Cancels every sleeper and waits up to `limit` for all of them to end.
    fn cancel_and_collect(self, rt: &tokio::runtime::Runtime, limit: Duration) -> CancelReport {
        let start = Instant::now();
        self.cancel.cancel();
        let mut report = rt.block_on(async {
            let deadline = tokio::time::Instant::now() + limit;
            let mut report = CancelReport::default();
            for mut task in self.tasks {
                let wrong = match tokio::time::timeout_at(deadline, &mut task).await {
                    Err(_) => {
                        report.stuck += 1;
                        task.abort();
                        continue;
                    }
                    Ok(Err(join)) => format!("the task failed: {join}"),
                    Ok(Ok(Err(err))) => format!("Err({err:#})"),
                    Ok(Ok(Ok(outcome))) => match check_outcome("", &outcome, Status::Cancelled, SLEEPING_OUTPUT) {
                        Ok(()) => {
                            report.as_expected += 1;
                            continue;
                        }
                        Err(err) => format!("{err:#}"),
                    },
                };
                *report.wrong.entry(wrong).or_default() += 1;
            }
            report
        });
        report.limit = limit;
        report.elapsed = start.elapsed();
        report
    }

    /// [`Sleepers::cancel_and_collect`], failing unless every sleeper ended as expected.
    pub(crate) fn cancel_and_check(self, rt: &tokio::runtime::Runtime, limit: Duration) -> Result<Duration> {
        self.cancel_and_collect(rt, limit).check()
    }
}

/// How cancelled sleepers ended.
#[derive(Default)]
struct CancelReport {
    /// Cancelled, after printing `sleeping`.
    as_expected: usize,
    /// Not ended within `limit` of the cancel.
    stuck: usize,
    /// Every other ending, with how many ended so.
    wrong: std::collections::BTreeMap<String, usize>,
    limit: Duration,
    /// From the cancel until the last one ended.
    elapsed: Duration,
}

impl CancelReport {
    fn is_clean(&self) -> bool {
        self.stuck == 0 && self.wrong.is_empty()
    }

    /// How long cancelling took, or an error listing every way a sleeper ended wrongly.
    fn check(&self) -> Result<Duration> {
        if self.is_clean() {
            return Ok(self.elapsed);
        }
        let total = self.as_expected + self.stuck + self.wrong.values().sum::<usize>();
        let mut why = format!(
            "of {total} cancelled sleepers, {} ended as expected and {} had not ended after {} s",
            self.as_expected,
            self.stuck,
            self.limit.as_secs()
        );
        for (wrong, count) in &self.wrong {
            why.push_str(&format!("; {count} {wrong}"));
        }
        bail!(why)
    }
}

/// Waits, at least `min_wait`, until resident memory stops growing (less than 1% of the growth
/// over `baseline_kib`, or 256 KiB, in one second), and returns the status then. Gives up
/// after a minute and says so; the sleepers' output check still catches any that never
/// reached their sleep.
pub(crate) fn settle(baseline_kib: u64, min_wait: Duration) -> Result<ProcStatus> {
    let start = Instant::now();
    let mut samples = vec![ProcStatus::read()?];
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = ProcStatus::read()?;
        samples.push(now);
        let second_ago = samples[samples.len().saturating_sub(5)].rss_kib;
        let growth = now.rss_kib.saturating_sub(second_ago);
        let allowed = (now.rss_kib.saturating_sub(baseline_kib) / 100).max(256);
        if start.elapsed() >= min_wait && samples.len() >= 5 && growth <= allowed {
            return Ok(now);
        }
        if start.elapsed() > Duration::from_secs(60) {
            println!("RSS still growing after 60 s; measuring anyway");
            return Ok(now);
        }
    }
}

/// This process's resident and virtual size, thread count (`/proc/self/status`) and number of
/// memory mappings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcStatus {
    pub(crate) rss_kib: u64,
    vm_kib: u64,
    threads: u64,
    /// Lines in `/proc/self/maps`, held against `vm.max_map_count`.
    maps: u64,
}

impl ProcStatus {
    pub(crate) fn read() -> Result<ProcStatus> {
        let text = std::fs::read_to_string("/proc/self/status")
            .context("failed to read `/proc/self/status`; the memory figures need Linux")?;
        let field = |name: &str| -> Result<u64> {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("no `{name}` in `/proc/self/status`"))
        };
        Ok(ProcStatus {
            rss_kib: field("VmRSS:")?,
            vm_kib: field("VmSize:")?,
            threads: field("Threads:")?,
            maps: std::fs::read_to_string("/proc/self/maps")
                .context("failed to read `/proc/self/maps`")?
                .lines()
                .count() as u64,
        })
    }
}
