//! Figure 3: what epoch and fuel metering cost on two CPU-bound guests, on raw wasmtime, on
//! wasmcell and against native builds of the same programs.

use crate::raw::{EPOCH_TICK, RawConfig, RawWasmtime};
use crate::stats::{Stats, ms, ratio};
use crate::support::{build_native, exe};
use crate::{Settings, Target, WARM_UP};
use anyhow::{Context as _, Result, ensure};
use std::process::{Command, Stdio};
use std::time::Instant;
use wasmcell::{Engine, EngineConfig, Policy, Sandbox, Status};

/// The metering workloads: guest, its path, its arguments. Sized so a native run takes tens
/// of milliseconds, so that process start-up is a small part of the native time. The sieve
/// stays at N = 65536: above it `n * n` overflows the guest's 32-bit `usize` and the Wasm
/// build counts wrongly (148916 primes below 2000000 instead of 148933).
const METERING_WORKLOADS: [(&str, &str, &[&str]); 2] = [
    ("cpu_sieve", wasmcell_artifacts::CPU_SIEVE, &["65536", "500"]),
    ("cpu_mandelbrot", wasmcell_artifacts::CPU_MANDELBROT, &["1200"]),
];

pub(crate) fn bench_metering(settings: &Settings, summary: &mut Vec<Target>) -> Result<()> {
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
