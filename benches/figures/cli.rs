//! Figure 1: `wasmcell run` cold start with warm compile caches, against `wasmtime run` and a
//! native `hello`.

use crate::stats::{Stats, ms, ratio};
use crate::support::{ScratchDir, build_native, count_files, exe, find_on_path};
use crate::{HELLO_OUTPUT, Settings, Target, WARM_UP, WASMCELL};
use anyhow::{Context as _, Result, ensure};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn bench_cli(settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
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
