//! Figure 2: instantiate + run + drop of a loaded `hello`, runs per second on one and two
//! threads, against raw wasmtime doing the same work.

use crate::raw::{EPOCH_TICK, RawConfig, RawWasmtime};
use crate::stats::{Spread, ms};
use crate::support::check_outcome;
use crate::{HELLO_OUTPUT, Settings, Target, WARM_UP_RUNS};
use anyhow::{Result, ensure};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use wasmcell::{Allocator, Engine, EngineConfig, Policy, PoolingConfig, Program, Sandbox, Status};
use wasmtime::InstancePre;
use wasmtime_wasi::p1::WasiP1Ctx;

/// Each throughput figure is measured in this many slices, taken in turn with the others.
const EMBED_SLICES: u32 = 4;
/// Pool slots of the pooling engines in the throughput figure.
const POOL_RUNS: u32 = 64;
/// `keep_resident` of the tuned raw wasmtime row in the throughput figure: enough for the
/// pages `hello` touches (its shadow stack is the first 1 MiB of its memory).
const KEEP_RESIDENT: usize = 2 << 20;

pub(crate) fn bench_embed(settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
    let budget = settings.throughput_budget();
    println!(
        "\n== 2. Embedded instantiate + run + drop of hello (module): {:.1} s per figure",
        budget.as_secs_f64()
    );
    println!(
        "wasmcell: Policy::deny_all, run_program, stdout captured. raw wasmtime: WASI p1, stdout in a \
         MemoryOutputPipe, epoch interruption on with a {} ms ticker and a per-tick callback (as wasmcell), \
         pools of {POOL_RUNS} slots with memories capped at 256 MiB and wasmtime's other pool defaults; \
         the keep_resident row also keeps 2 MiB of each memory and table slot resident, as \
         wasmcell's PoolingConfig::new does, and is the baseline the target compares against (the \
         fastest raw configuration).",
        EPOCH_TICK.as_millis()
    );
    let pooling = EngineConfig {
        allocator: Allocator::Pooling(PoolingConfig::new(POOL_RUNS)),
        ..EngineConfig::default()
    };
    let pooled = WasmcellHello::new(pooling, wasmcell_artifacts::HELLO)?;
    let on_demand = WasmcellHello::new(EngineConfig::default(), wasmcell_artifacts::HELLO)?;
    let component = WasmcellHello::new(pooling, wasmcell_artifacts::HELLO_COMPONENT)?;
    let raw_sync = RawHello::new(RawConfig {
        pool: Some(POOL_RUNS),
        epoch: true,
        ..RawConfig::default()
    })?;
    let raw_async = RawHello::new(RawConfig {
        pool: Some(POOL_RUNS),
        epoch: true,
        fiber: true,
        ..RawConfig::default()
    })?;
    let raw_resident = RawHello::new(RawConfig {
        pool: Some(POOL_RUNS),
        epoch: true,
        fiber: true,
        keep_resident: KEEP_RESIDENT,
        ..RawConfig::default()
    })?;

    let rows: [(&str, &dyn Throughput); 6] = [
        ("wasmcell, pooling allocator", &pooled),
        ("wasmcell, on-demand allocator", &on_demand),
        ("raw wasmtime, pooling, sync calls", &raw_sync),
        ("raw wasmtime, pooling, async calls (fiber)", &raw_async),
        ("raw wasmtime, as above + keep_resident 2 MiB", &raw_resident),
        ("wasmcell, pooling, hello as a component", &component),
    ];
    for (_, row) in rows {
        row.warm_up()?;
    }
    // Short slices in turn rather than one long measurement each, so that load from other
    // processes falls on every row alike; each figure is the median of its slices.
    let slice = budget / EMBED_SLICES;
    let mut samples = vec![[const { Vec::new() }; 2]; rows.len()];
    for _ in 0..EMBED_SLICES {
        for ((_, row), samples) in rows.iter().zip(&mut samples) {
            for (threads, samples) in [1, 2].into_iter().zip(samples) {
                samples.push(row.runs_per_second(threads, slice)?);
            }
        }
    }
    println!(
        "{:<46} {:>22} {:>22}",
        "runs/s, median (min-max) of slices", "1 thread", "2 threads"
    );
    let mut rates = Vec::new();
    for ((label, _), samples) in rows.iter().zip(&mut samples) {
        let [one, two] = samples.each_mut().map(|s| Spread::of(s));
        println!("{label:<46} {one:>22} {two:>22}");
        rates.push([one.median, two.median]);
    }
    println!(
        "compile + link once (fresh engine, no disk cache): module {:.1} ms, component {:.1} ms",
        ms(pooled.load),
        ms(component.load)
    );
    let [pooled, _, raw_sync, raw_async, raw_resident] = [rates[0], rates[1], rates[2], rates[3], rates[4]];
    for (i, threads) in ["1 thread", "2 threads"].into_iter().enumerate() {
        let vs_sync = raw_sync[i] / pooled[i];
        println!(
            "{threads:<10} raw/wasmcell pooling: sync {vs_sync:.2}x, async {:.2}x, async + keep_resident {:.2}x",
            raw_async[i] / pooled[i],
            raw_resident[i] / pooled[i]
        );
        summary.push(Target::new(
            format!("2 embed runs/s, pooling, {threads}"),
            ">= 20,000 runs/s",
            format!("{:.0} runs/s", pooled[i]),
            Some(pooled[i] >= 20_000.0),
        ));
        let best_raw = raw_sync[i].max(raw_async[i]).max(raw_resident[i]);
        let vs_best = best_raw / pooled[i];
        summary.push(Target::new(
            format!("2 embed fastest raw wasmtime/wasmcell, {threads}"),
            "<= 1.30x",
            format!("{vs_best:.2}x ({best_raw:.0} vs {:.0} runs/s)", pooled[i]),
            Some(vs_best <= 1.3),
        ));
    }
    Ok(())
}

/// Something that runs `hello` once per call and checks its output.
trait Throughput: Sync {
    /// A runner for one thread.
    fn worker(&self) -> Result<Box<dyn FnMut() -> Result<()> + Send + '_>>;

    /// [`WARM_UP_RUNS`] untimed runs.
    fn warm_up(&self) -> Result<()> {
        let mut worker = self.worker()?;
        for _ in 0..WARM_UP_RUNS {
            worker()?;
        }
        Ok(())
    }

    /// Runs per second summed over `threads` threads each running for `budget`.
    fn runs_per_second(&self, threads: usize, budget: Duration) -> Result<f64> {
        let workers = (0..threads).map(|_| self.worker()).collect::<Result<Vec<_>>>()?;
        let barrier = Barrier::new(threads);
        let counts = std::thread::scope(|scope| {
            let barrier = &barrier;
            let handles: Vec<_> = workers
                .into_iter()
                .map(|mut worker| {
                    scope.spawn(move || -> Result<f64> {
                        barrier.wait();
                        let start = Instant::now();
                        let mut runs = 0u64;
                        loop {
                            worker()?;
                            runs += 1;
                            let elapsed = start.elapsed();
                            if elapsed >= budget {
                                return Ok(runs as f64 / elapsed.as_secs_f64());
                            }
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a benchmark thread panicked"))
                .collect::<Vec<_>>()
        });
        counts.into_iter().sum()
    }
}

/// A wasmcell sandbox with the deny-all policy and `hello` loaded, on its own engine.
struct WasmcellHello {
    sandbox: Sandbox,
    program: Program,
    /// How long compiling and linking `hello` took (the engine has no disk cache).
    load: Duration,
}

impl WasmcellHello {
    fn new(config: EngineConfig, guest: &str) -> Result<WasmcellHello> {
        let sandbox = Sandbox::builder()
            .engine(Engine::new(config)?)
            .policy(Policy::deny_all())
            .build()?;
        let start = Instant::now();
        let program = sandbox.load(guest)?;
        let load = start.elapsed();
        Ok(WasmcellHello { sandbox, program, load })
    }
}

impl Throughput for WasmcellHello {
    fn worker(&self) -> Result<Box<dyn FnMut() -> Result<()> + Send + '_>> {
        Ok(Box::new(|| {
            let outcome = self.sandbox.run_program(&self.program, &[] as &[&str])?;
            check_outcome("wasmcell hello ", &outcome, Status::Exited(0), HELLO_OUTPUT)
        }))
    }
}

/// A raw wasmtime engine with `hello` linked.
struct RawHello {
    raw: RawWasmtime,
    pre: InstancePre<WasiP1Ctx>,
}

impl RawHello {
    fn new(config: RawConfig) -> Result<RawHello> {
        let raw = RawWasmtime::new(config)?;
        let pre = raw.load(wasmcell_artifacts::HELLO)?;
        Ok(RawHello { raw, pre })
    }
}

impl Throughput for RawHello {
    fn worker(&self) -> Result<Box<dyn FnMut() -> Result<()> + Send + '_>> {
        let check = |stdout: Vec<u8>| {
            ensure!(
                stdout == HELLO_OUTPUT,
                "raw wasmtime hello printed {:?}",
                String::from_utf8_lossy(&stdout)
            );
            Ok(())
        };
        if self.raw.config.fiber {
            // One single-threaded runtime per thread, the least an async embedder needs.
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            Ok(Box::new(move || {
                check(rt.block_on(self.raw.run_async(&self.pre, &[]))?)
            }))
        } else {
            Ok(Box::new(move || check(self.raw.run(&self.pre, &[])?)))
        }
    }
}
