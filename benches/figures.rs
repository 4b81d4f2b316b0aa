//! The benchmark figures the README quotes, measured in one run and printed with their ratios
//! and a closing summary of targets met and missed:
//!
//! 1. `cli`: `wasmcell run` on the `hello` guest (module and component) with a warm compile
//!    cache, against `wasmtime run` with its warm cache and against a native `hello`;
//! 2. `embed`: instantiate + run + drop of a loaded `hello` module, runs per second on one and
//!    two threads, against raw wasmtime doing the same work;
//! 3. `metering`: what epoch and fuel metering cost on two CPU-bound guests, measured on raw
//!    wasmtime engines, on wasmcell itself and against native builds of the same programs;
//! 4. `memory`: resident memory per sandbox with 10,000 guests asleep in a host call at once,
//!    then cancelling all of them through one handle;
//! 5. `latency`: latency of a short run while 10 or 1,000 other sandboxes are alive.
//!
//! Run with `cargo bench --bench figures [-- SECTION...]`, SECTION being any of `cli embed
//! metering memory latency` (none: all), with a `wasmtime` binary on PATH for the CLI
//! comparison. `WASMCELL_BENCH_RUNS=N` (default 30) scales the counts: N timed runs per CLI
//! command, N/15 seconds per throughput figure, N/3 timed runs per metering configuration and
//! 100·N latency samples per load. The memory figure needs room for about 7 memory mappings
//! per sandbox under `vm.max_map_count`. A run that ends with the wrong status or output
//! fails the benchmark (after the other sections have run); a missed target does not.

use anyhow::{Context as _, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use wasmcell::{
    Allocator, CancelHandle, Engine, EngineConfig, Outcome, Policy, PoolingConfig, Program, RunOptions, Sandbox, Status,
};
use wasmtime::{
    InstanceAllocationStrategy, InstancePre, Linker, Module, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

const SECTIONS: [&str; 5] = ["cli", "embed", "metering", "memory", "latency"];
const WASMCELL: &str = env!("CARGO_BIN_EXE_wasmcell");
const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");
const HELLO_OUTPUT: &[u8] = b"hello from wasmcell\n";
const SLEEPING_OUTPUT: &[u8] = b"sleeping\n";
/// Untimed runs of each CLI command and each metering configuration before timing.
const WARM_UP: usize = 3;
/// Untimed runs before a throughput or latency measurement.
const WARM_UP_RUNS: usize = 200;
/// How often wasmcell's epoch thread ticks; the raw wasmtime engines tick as often.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Each throughput figure is measured in this many slices, taken in turn with the others.
const EMBED_SLICES: u32 = 4;
/// Pool slots of the pooling engines in the throughput figure.
const POOL_RUNS: u32 = 64;
/// `keep_resident` of the tuned raw wasmtime row in the throughput figure: enough for the
/// pages `hello` touches (its shadow stack is the first 1 MiB of its memory).
const KEEP_RESIDENT: usize = 2 << 20;
/// Sandboxes asleep at once in the memory figure.
const SLEEPERS: usize = 10_000;
/// Other sandboxes alive during the latency figure's probes.
const LATENCY_LOADS: [usize; 3] = [0, 10, 1_000];
/// The latency samples of each load are taken in this many slices, in turn with the others.
const LATENCY_SLICES: usize = 3;
/// The metering workloads: guest, its path, its arguments. Sized so a native run takes tens
/// of milliseconds, so that process start-up is a small part of the native time. The sieve
/// stays at N = 65536: above it `n * n` overflows the guest's 32-bit `usize` and the Wasm
/// build counts wrongly (148916 primes below 2000000 instead of 148933).
const METERING_WORKLOADS: [(&str, &str, &[&str]); 2] = [
    ("cpu_sieve", wasmcell_artifacts::CPU_SIEVE, &["65536", "500"]),
    ("cpu_mandelbrot", wasmcell_artifacts::CPU_MANDELBROT, &["1200"]),
];

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
        load_average()
    );
    let mut summary = Vec::new();
    let mut failed = Vec::new();
    for section in sections {
        // A failed section still lets the others run; the benchmark fails at the end.
        let result = match section {
            "cli" => bench_cli(&settings, &mut summary),
            "embed" => bench_embed(&settings, &mut summary),
            "metering" => bench_metering(&settings, &mut summary),
            "memory" => bench_memory(&mut summary),
            "latency" => bench_latency(&settings, &mut summary),
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
    println!("load average at the end: {}", load_average());
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

// ---------------------------------------------------------------------------------------------
// 1. CLI cold start

fn bench_cli(settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
    let runs = settings.cli_runs();
    println!("\n== 1. CLI cold start with warm compile caches: hello, {runs} timed runs per command");
    let native = build_native(&["hello"])?.join(exe("hello"));
    let wasmtime = find_on_path("wasmtime");
    let cache = ScratchDir::new("bench-cache")?;
    let guests = [
        ("module", wasmcell_artifacts::HELLO),
        ("component", wasmcell_artifacts::HELLO_COMPONENT),
    ];

    let mut commands = vec![CliCommand::new("native hello", &native, &[])];
    for (kind, guest) in guests {
        let mut ours = CliCommand::new(&format!("wasmcell run ({kind})"), Path::new(WASMCELL), &["run", guest]);
        ours.env = Some(("WASMCELL_CACHE_DIR", cache.path.clone()));
        commands.push(ours);
        if let Some(wasmtime) = &wasmtime {
            commands.push(CliCommand::new(
                &format!("wasmtime run ({kind})"),
                wasmtime,
                &["run", guest],
            ));
            // Not a target: shows how much of wasmtime's time its cache saves.
            commands.push(CliCommand::new(
                &format!("wasmtime run -C cache=n ({kind})"),
                wasmtime,
                &["run", "-C", "cache=n", guest],
            ));
        }
    }
    // The first run of each fills its cache.
    for command in &commands {
        for _ in 0..WARM_UP {
            command.run_checked()?;
        }
    }
    let cached = count_files(&cache.path, ".cwasm")?;
    ensure!(
        cached == guests.len(),
        "wasmcell's compile cache `{}` holds {cached} programs after the warm-up runs, not {}",
        cache.path.display(),
        guests.len()
    );
    // Round robin, so that load from other processes falls on every command alike.
    let mut times = vec![Vec::with_capacity(runs); commands.len()];
    for _ in 0..runs {
        for (command, times) in commands.iter().zip(&mut times) {
            times.push(command.run_checked()?);
        }
    }
    let stats: Vec<Stats> = times.into_iter().map(Stats::from).collect();
    println!("{:<36} {:>9} {:>10} {:>9}", "command", "min ms", "median ms", "mean ms");
    for (command, stats) in commands.iter().zip(&stats) {
        println!(
            "{:<36} {:>9.2} {:>10.2} {:>9.2}",
            command.label,
            ms(stats.min),
            ms(stats.median),
            ms(stats.mean)
        );
    }
    if wasmtime.is_none() {
        println!("wasmtime run: no `wasmtime` on PATH; its columns are skipped");
    }
    let median = |label: String| {
        commands
            .iter()
            .zip(&stats)
            .find(|(c, _)| c.label == label)
            .map(|(_, s)| s.median)
    };
    let native_median = stats[0].median;
    println!();
    for (kind, _) in guests {
        let ours = median(format!("wasmcell run ({kind})")).expect("timed above");
        let theirs = median(format!("wasmtime run ({kind})"));
        let vs_wasmtime = theirs.map_or("n/a".into(), |t| format!("{:.2}x", ratio(ours, t)));
        println!(
            "{kind:<10} median: wasmcell/wasmtime {vs_wasmtime:>6}   wasmcell/native {:>5.2}x",
            ratio(ours, native_median)
        );
        summary.push(match theirs {
            Some(theirs) => Target::new(
                format!("1 cli cold start, {kind}"),
                "wasmcell <= wasmtime",
                format!("{:.2} vs {:.2} ms ({vs_wasmtime})", ms(ours), ms(theirs)),
                Some(ours <= theirs),
            ),
            None => Target::new(
                format!("1 cli cold start, {kind}"),
                "wasmcell <= wasmtime",
                format!("{:.2} ms; wasmtime not on PATH", ms(ours)),
                None,
            ),
        });
    }
    Ok(())
}

/// One command line of the CLI figure; every run must exit 0 and print the hello line.
struct CliCommand {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    env: Option<(&'static str, PathBuf)>,
}

impl CliCommand {
    fn new(label: &str, program: &Path, args: &[&str]) -> CliCommand {
        CliCommand {
            label: label.to_string(),
            program: program.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: None,
        }
    }

    fn run_checked(&self) -> Result<Duration> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((name, value)) = &self.env {
            command.env(name, value);
        }
        let start = Instant::now();
        let output = command
            .output()
            .with_context(|| format!("failed to spawn `{}`", self.program.display()))?;
        let elapsed = start.elapsed();
        ensure!(
            output.status.success() && output.stdout == HELLO_OUTPUT,
            "`{}` ({}) ended with {} and printed {:?}; stderr: {}",
            self.label,
            self.program.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(elapsed)
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Embedded throughput

fn bench_embed(settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
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

// ---------------------------------------------------------------------------------------------
// Raw wasmtime, set up by hand the way a plain embedder would

/// How a raw wasmtime engine is configured.
#[derive(Debug, Clone, Copy, Default)]
struct RawConfig {
    fuel: bool,
    epoch: bool,
    /// Pooling allocator with this many slots; on-demand otherwise.
    pool: Option<u32>,
    /// Call through async (on a fiber, as wasmcell does) rather than sync.
    fiber: bool,
    /// Bytes of each pooled memory and table reset in place rather than given back to the
    /// kernel (`linear_memory_keep_resident`, `table_keep_resident`); wasmtime's default is 0.
    keep_resident: usize,
}

/// A wasmtime engine with WASI preview 1 linked and, when epochs are on, a ticker thread.
struct RawWasmtime {
    engine: wasmtime::Engine,
    config: RawConfig,
    linker: Linker<WasiP1Ctx>,
    _ticker: Option<Ticker>,
}

impl RawWasmtime {
    fn new(config: RawConfig) -> Result<RawWasmtime> {
        let mut wasm = wasmtime::Config::new();
        // wasmcell's default stack and fiber sizes.
        wasm.consume_fuel(config.fuel)
            .epoch_interruption(config.epoch)
            .max_wasm_stack(1 << 20)
            .async_stack_size(2 << 20);
        if let Some(slots) = config.pool {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(slots)
                .total_core_instances(slots)
                .total_memories(slots)
                .total_tables(slots)
                .total_stacks(slots)
                .max_memory_size(256 << 20)
                .linear_memory_keep_resident(config.keep_resident)
                .table_keep_resident(config.keep_resident);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = wasmtime::Engine::new(&wasm)?;
        let mut linker = Linker::new(&engine);
        if config.fiber {
            wasmtime_wasi::p1::add_to_linker_async(&mut linker, |wasi| wasi)?;
        } else {
            wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |wasi| wasi)?;
        }
        let ticker = config.epoch.then(|| Ticker::start(&engine)).transpose()?;
        Ok(RawWasmtime {
            engine,
            config,
            linker,
            _ticker: ticker,
        })
    }

    fn load(&self, path: &str) -> Result<InstancePre<WasiP1Ctx>> {
        let module = Module::from_file(&self.engine, path)?;
        Ok(self.linker.instantiate_pre(&module)?)
    }

    /// A store whose guest sees `args` and writes stdout to the returned pipe, with all the
    /// fuel there is and an epoch callback at every tick.
    fn new_store(&self, args: &[&str]) -> Result<(Store<WasiP1Ctx>, MemoryOutputPipe)> {
        let stdout = MemoryOutputPipe::new(1 << 20);
        let mut argv = vec!["guest.wasm"];
        argv.extend_from_slice(args);
        let wasi = WasiCtxBuilder::new().args(&argv).stdout(stdout.clone()).build_p1();
        let mut store = Store::new(&self.engine, wasi);
        if self.config.fuel {
            store.set_fuel(u64::MAX)?;
        }
        if self.config.epoch {
            store.set_epoch_deadline(1);
            // A sync call cannot yield, so it continues; the trip to the host is the same.
            let fiber = self.config.fiber;
            store.epoch_deadline_callback(move |_| {
                Ok(if fiber {
                    UpdateDeadline::Yield(1)
                } else {
                    UpdateDeadline::Continue(1)
                })
            });
        }
        Ok((store, stdout))
    }

    /// Instantiates, runs `_start` and drops the instance; returns what it printed.
    fn run(&self, pre: &InstancePre<WasiP1Ctx>, args: &[&str]) -> Result<Vec<u8>> {
        let (mut store, stdout) = self.new_store(args)?;
        let instance = pre.instantiate(&mut store)?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        check_exit(start.call(&mut store, ()))?;
        drop(store);
        Ok(stdout.contents().to_vec())
    }

    async fn run_async(&self, pre: &InstancePre<WasiP1Ctx>, args: &[&str]) -> Result<Vec<u8>> {
        let (mut store, stdout) = self.new_store(args)?;
        let instance = pre.instantiate_async(&mut store).await?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        check_exit(start.call_async(&mut store, ()).await)?;
        drop(store);
        Ok(stdout.contents().to_vec())
    }
}

/// Accepts a return from `_start` or `proc_exit(0)`.
fn check_exit(result: wasmtime::Result<()>) -> Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(err) if err.downcast_ref::<I32Exit>().is_some_and(|exit| exit.0 == 0) => Ok(()),
        Err(err) => Err(anyhow::Error::from(err).context("the guest failed under raw wasmtime")),
    }
}

/// Increments an engine's epoch every [`EPOCH_TICK`], as wasmcell's epoch thread does, until
/// dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: &wasmtime::Engine) -> Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let engine = engine.clone();
        let thread = std::thread::Builder::new()
            .name("bench-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .context("failed to start an epoch thread")?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Metering

fn bench_metering(settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
    let runs = settings.metering_runs();
    println!(
        "\n== 3. Metering cost on CPU-bound guests: {runs} timed runs per configuration after {WARM_UP} warm-up runs"
    );
    println!(
        "raw: wasmtime engines running `_start` through WASI p1 (sync), fuel = u64::MAX, epoch deadline 1 tick \
         with a callback that continues, ticker every {} ms. wasmcell: Policy::deny_all (epoch only) and \
         limits.fuel = 10^15 (fuel + epoch). native: the same program built for the host, spawned.",
        EPOCH_TICK.as_millis()
    );
    let native_dir = build_native(&METERING_WORKLOADS.map(|(name, _, _)| name))?;
    let raw_configs = [
        ("raw unmetered", false, false),
        ("raw epoch", false, true),
        ("raw fuel", true, false),
        ("raw fuel+epoch", true, true),
    ];
    let raw: Vec<(&str, RawWasmtime)> = raw_configs
        .into_iter()
        .map(|(label, fuel, epoch)| {
            Ok((
                label,
                RawWasmtime::new(RawConfig {
                    fuel,
                    epoch,
                    ..RawConfig::default()
                })?,
            ))
        })
        .collect::<Result<_>>()?;
    let wasmcell_epoch = Sandbox::builder()
        .engine(Engine::new(EngineConfig::default())?)
        .policy(Policy::deny_all())
        .build()?;
    let fuel_policy = Policy::from_toml("[limits]\nfuel = 1_000_000_000_000_000\ntimeout = \"10m\"", ".")?;
    let wasmcell_fuel = Sandbox::builder()
        .engine(Engine::new(EngineConfig {
            fuel: true,
            ..EngineConfig::default()
        })?)
        .policy(fuel_policy)
        .build()?;

    for (name, guest, args) in METERING_WORKLOADS {
        let native = native_dir.join(exe(name));
        let pres = raw.iter().map(|(_, raw)| raw.load(guest)).collect::<Result<Vec<_>>>()?;
        let epoch_program = wasmcell_epoch.load(guest)?;
        let fuel_program = wasmcell_fuel.load(guest)?;

        type Runner<'a> = Box<dyn Fn() -> Result<Vec<u8>> + 'a>;
        let mut configs: Vec<(&str, Runner)> = vec![(
            "native",
            Box::new(|| {
                let output = Command::new(&native)
                    .args(args)
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()
                    .with_context(|| format!("failed to spawn `{}`", native.display()))?;
                ensure!(output.status.success(), "native `{name}` failed: {}", output.status);
                Ok(output.stdout)
            }),
        )];
        for ((label, raw), pre) in raw.iter().zip(&pres) {
            configs.push((label, Box::new(move || raw.run(pre, args))));
        }
        for (label, sandbox, program) in [
            ("wasmcell epoch", &wasmcell_epoch, &epoch_program),
            ("wasmcell fuel+epoch", &wasmcell_fuel, &fuel_program),
        ] {
            configs.push((
                label,
                Box::new(move || {
                    let outcome = sandbox.run_program(program, args)?;
                    ensure!(
                        outcome.status == Status::Exited(0),
                        "{label} `{name}` ended with {:?} ({:?})",
                        outcome.status,
                        outcome.trap
                    );
                    Ok(outcome.stdout)
                }),
            ));
        }

        let expected = configs[0].1()?;
        let mut times = vec![Vec::with_capacity(runs); configs.len()];
        for round in 0..WARM_UP + runs {
            for ((label, run), times) in configs.iter().zip(&mut times) {
                let start = Instant::now();
                let stdout = run()?;
                let elapsed = start.elapsed();
                ensure!(
                    stdout == expected,
                    "{label} `{name}` printed {:?}, the native build {:?}",
                    String::from_utf8_lossy(&stdout),
                    String::from_utf8_lossy(&expected)
                );
                if round >= WARM_UP {
                    times.push(elapsed);
                }
            }
        }
        let stats: Vec<Stats> = times.into_iter().map(Stats::from).collect();
        let median = |label: &str| {
            configs
                .iter()
                .zip(&stats)
                .find(|((l, _), _)| *l == label)
                .map(|(_, s)| s.median)
                .expect("a configuration measured above")
        };
        let (unmetered, native_median) = (median("raw unmetered"), median("native"));
        println!(
            "\n{name} {} -> {}",
            args.join(" "),
            String::from_utf8_lossy(&expected).trim()
        );
        println!(
            "{:<22} {:>10} {:>9} {:>13} {:>10}",
            "configuration", "median ms", "min ms", "x unmetered", "x native"
        );
        for ((label, _), stats) in configs.iter().zip(&stats) {
            println!(
                "{label:<22} {:>10.1} {:>9.1} {:>12.2}x {:>9.2}x",
                ms(stats.median),
                ms(stats.min),
                ratio(stats.median, unmetered),
                ratio(stats.median, native_median)
            );
        }
        for metering in ["epoch", "fuel+epoch"] {
            let (ours, theirs) = (&*format!("wasmcell {metering}"), &*format!("raw {metering}"));
            let r = ratio(median(ours), median(theirs));
            println!("{ours} / {theirs}: {r:.3}x");
            summary.push(Target::new(
                format!("3 {name}, {metering}: wasmcell/raw"),
                "<= 1.05x (no sandbox cost)",
                format!(
                    "{r:.3}x ({:.1} ms; {:.2}x unmetered)",
                    ms(median(ours)),
                    ratio(median(ours), unmetered)
                ),
                Some(r <= 1.05),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. Memory of idle sandboxes

fn bench_memory(summary: &mut Vec<Target>) -> Result<()> {
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
fn sleeper_sandbox(engine: Engine) -> Result<Sandbox> {
    Sandbox::builder()
        .engine(engine)
        .policy(Policy::from_toml("[limits]\ntimeout = \"1h\"", ".")?)
        .build()
}

/// Sleeper runs as tasks on a runtime, all cancelled by one handle.
struct Sleepers {
    cancel: CancelHandle,
    tasks: Vec<tokio::task::JoinHandle<Result<Outcome>>>,
}

impl Sleepers {
    fn start(rt: &tokio::runtime::Runtime, sandbox: &Sandbox, program: &Program, count: usize) -> Sleepers {
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
    fn cancel_and_check(self, rt: &tokio::runtime::Runtime, limit: Duration) -> Result<Duration> {
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
fn settle(baseline_kib: u64, min_wait: Duration) -> Result<ProcStatus> {
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
struct ProcStatus {
    rss_kib: u64,
    vm_kib: u64,
    threads: u64,
    /// Lines in `/proc/self/maps`, held against `vm.max_map_count`.
    maps: u64,
}

impl ProcStatus {
    fn read() -> Result<ProcStatus> {
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

// ---------------------------------------------------------------------------------------------
// 5. Latency under concurrency

fn bench_latency(settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
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

/// The nearest-rank percentile of sorted `values`.
fn percentile(values: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

fn check_outcome(what: &str, outcome: &Outcome, status: Status, stdout: &[u8]) -> Result<()> {
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
fn build_native(bins: &[&str]) -> Result<PathBuf> {
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

fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(exe(name)))
        .find(|path| path.is_file())
}

/// A directory under `target/` that does not exist yet, removed again on drop.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new(prefix: &str) -> Result<ScratchDir> {
        let path = Path::new(WORKSPACE)
            .join("target")
            .join(format!("{prefix}-{}", std::process::id()));
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

fn count_files(dir: &Path, suffix: &str) -> Result<usize> {
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
fn read_trimmed(path: &str, pick: impl Fn(&str) -> bool) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find(|l| pick(l)).map(|l| l.trim().to_string())
}

fn load_average() -> String {
    read_trimmed("/proc/loadavg", |_| true)
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The median and range of a few throughput samples.
#[derive(Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(samples: &mut [f64]) -> Spread {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        Spread {
            median: (samples[(n - 1) / 2] + samples[n / 2]) / 2.0,
            min: samples[0],
            max: samples[n - 1],
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = format!("{:.0} ({:.0}-{:.0})", self.median, self.min, self.max);
        f.pad(&text)
    }
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

fn us(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn ratio(ours: Duration, theirs: Duration) -> f64 {
    ours.as_secs_f64() / theirs.as_secs_f64()
}
