//! Figure 1: `wasmcell run` cold start with warm compile caches, against `wasmtime run` and a
//! native `hello`; then the same for a 65.7 MiB real program (yosys, from the corpus); then
//! how long refusing a 12 MiB module whose imports cannot be satisfied takes.
//!
//! The `wasmtime` compared against is the pinned, checksum-verified command line that
//! `scripts/corpus` installs under `target/corpus/` (wasmtime 48.0.2; x86_64 Linux only),
//! else one on PATH.

use crate::stats::{Stats, ms, ratio};
use crate::support::{ScratchDir, build_native, corpus, count_files, exe, find_on_path};
use crate::{HELLO_OUTPUT, Settings, Target, WARM_UP, WASMCELL};
use anyhow::{Context as _, Result, ensure};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn bench_cli(settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
    let runs = settings.cli_runs();
    println!("\n== 1. CLI cold start with warm compile caches: hello, {runs} timed runs per command");
    let native = build_native(&["hello"])?.join(exe("hello"));
    let wasmtime = find_wasmtime();
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
    let stats = time_round_robin(&commands, runs)?;
    if wasmtime.is_none() {
        println!("wasmtime run: no `wasmtime` from the corpus or on PATH; its columns are skipped");
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
        summary.push(Target::new(
            format!("1 cli cold start vs native, {kind}"),
            "wasmcell <= 2x native hello",
            format!(
                "{:.2} vs {:.2} ms ({:.2}x)",
                ms(ours),
                ms(native_median),
                ratio(ours, native_median)
            ),
            Some(ratio(ours, native_median) <= 2.0),
        ));
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
    bench_big_start(settings, wasmtime.as_deref(), &cache.path, summary)?;
    bench_unlinkable_refusal(settings, summary)
}

/// The refusal of a module that imports what wasmcell does not provide (`host::call`), 12 MiB
/// of data and 2,000 functions: refused from its import section, before Cranelift runs, with
/// nothing stored in the compile cache (see #25).
fn bench_unlinkable_refusal(settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
    let runs = (settings.cli_runs() / 3).max(5);
    println!("\n== 1c. CLI refusal of an unlinkable 12 MiB module, {runs} timed runs");
    let dir = ScratchDir::new("bench-unlinkable")?;
    std::fs::create_dir_all(&dir.path)?;
    let funcs: String = (0..2000)
        .map(|i| format!("(func (export \"f{i}\") (result i32) (call $call) (i32.const {i}))"))
        .collect();
    let wat = format!(
        r#"(module (import "host" "call" (func $call)) (memory 193) (data (i32.const 0) "{}") {funcs}
            (func (export "_start")))"#,
        "a".repeat(12 << 20)
    );
    let module = dir.path.join("unlinkable.wasm");
    std::fs::write(&module, wat::parse_str(&wat)?)?;
    let cache = dir.path.join("cache");
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let output = Command::new(WASMCELL)
            .arg("run")
            .arg("--cache-dir")
            .arg(&cache)
            .arg(&module)
            .stdin(Stdio::null())
            .output()?;
        times.push(start.elapsed());
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            output.status.code() == Some(126) && stderr.contains("`host::call`"),
            "the unlinkable module ended with {} and printed {stderr}",
            output.status
        );
    }
    let cached = count_files(&cache, ".cwasm")?;
    ensure!(
        cached == 0,
        "the refused module left {cached} compiled programs in the cache"
    );
    let stats = Stats::from(times);
    println!(
        "refused in {:.2} ms (median), min {:.2} ms",
        ms(stats.median),
        ms(stats.min)
    );
    summary.push(Target::new(
        "1c refusal of an unlinkable 12 MiB module",
        "< 1 s, nothing cached",
        format!("{:.2} ms, {cached} cached", ms(stats.median)),
        Some(stats.median < Duration::from_secs(1)),
    ));
    Ok(())
}

/// The warm start of a large program: yosys printing its version, 65.7 MiB of Wasm that
/// takes a minute or more to compile (the warm-up runs fill both caches). `wasmcell run`
/// opts in to exception handling, which yosys uses, and raises the 64 MiB module-size limit;
/// `wasmtime run` has exceptions on by default.
fn bench_big_start(
    settings: &Settings,
    wasmtime: Option<&Path>,
    cache: &Path,
    summary: &mut Vec<Target>,
) -> Result<()> {
    let runs = (settings.cli_runs() / 3).max(5);
    let yosys = corpus("yosys")?;
    let yosys = yosys.to_str().context("the corpus path is UTF-8")?;
    println!("\n== 1b. CLI warm start of a big module: yosys.wasm (65.7 MiB), {runs} timed runs per command");
    let mut ours = CliCommand::new(
        "wasmcell run (yosys -V)",
        Path::new(WASMCELL),
        &["run", "--wasm", "exceptions", "--max-module-size", "80MiB", yosys, "-V"],
    );
    ours.env = Some(("WASMCELL_CACHE_DIR", cache.to_path_buf()));
    ours.expect = YOSYS_VERSION.to_vec();
    let mut commands = vec![ours];
    if let Some(wasmtime) = wasmtime {
        let mut theirs = CliCommand::new("wasmtime run (yosys -V)", wasmtime, &["run", yosys, "-V"]);
        theirs.expect = YOSYS_VERSION.to_vec();
        commands.push(theirs);
    }
    for command in &commands {
        // The first run compiles (a minute or more); the next ones must hit the caches.
        for _ in 0..WARM_UP {
            command.run_checked()?;
        }
    }
    let stats = time_round_robin(&commands, runs)?;
    let ours = stats[0].median;
    summary.push(match stats.get(1) {
        Some(theirs) => Target::new(
            "1b big module warm start (yosys)",
            "wasmcell <= wasmtime",
            format!(
                "{:.2} vs {:.2} ms ({:.2}x)",
                ms(ours),
                ms(theirs.median),
                ratio(ours, theirs.median)
            ),
            Some(ours <= theirs.median),
        ),
        None => Target::new(
            "1b big module warm start (yosys)",
            "wasmcell <= wasmtime",
            format!("{:.2} ms; no wasmtime", ms(ours)),
            None,
        ),
    });
    Ok(())
}

/// What `yosys -V` prints first.
const YOSYS_VERSION: &[u8] = b"Yosys 0.70 ";

/// The pinned wasmtime command line from the corpus, else one on PATH. The corpus pins an
/// x86_64 Linux build; elsewhere its failure is printed and PATH is tried.
fn find_wasmtime() -> Option<PathBuf> {
    match corpus("wasmtime") {
        Ok(path) => Some(path),
        Err(err) => {
            println!("wasmtime from the corpus: {err:#}; looking on PATH");
            find_on_path("wasmtime")
        }
    }
}

/// One command line of the CLI figure; every run must exit 0 and print what `expect` starts
/// with (the hello line unless set otherwise).
pub(crate) struct CliCommand {
    pub(crate) label: String,
    program: PathBuf,
    args: Vec<String>,
    pub(crate) env: Option<(&'static str, PathBuf)>,
    /// What stdout must start with.
    pub(crate) expect: Vec<u8>,
}

impl CliCommand {
    pub(crate) fn new(label: &str, program: &Path, args: &[&str]) -> CliCommand {
        CliCommand {
            label: label.to_string(),
            program: program.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: None,
            expect: HELLO_OUTPUT.to_vec(),
        }
    }

    pub(crate) fn run_checked(&self) -> Result<Duration> {
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
            output.status.success() && output.stdout.starts_with(&self.expect),
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

/// Times each command `runs` times, round robin so that load from other processes falls on
/// every command alike, and prints a table of their times.
pub(crate) fn time_round_robin(commands: &[CliCommand], runs: usize) -> Result<Vec<Stats>> {
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
    Ok(stats)
}
