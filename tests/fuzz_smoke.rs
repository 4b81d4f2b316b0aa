//! The fuzz smoke: a bounded, deterministic run of the checks behind the
//! cargo-fuzz targets (`fuzz/src/lib.rs`, included here as a module), fed
//! from fixed seeds so every submission explores the same few thousand
//! cases. Long runs belong to `cargo fuzz` (see `fuzz/README.md`).
//!
//! A case that fails prints its seed; replay it with
//! `WASMCELL_FUZZ_SEED=<seed> cargo test --test fuzz_smoke -- --nocapture`.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use harness::{ModuleCase, PolicyCase, RunLimits};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Policy cases per run.
const POLICY_CASES: u64 = 1_500;
/// wasm-smith module cases per run.
const MODULE_CASES: u64 = 1_500;
/// Mutations of each real guest per run.
const GUEST_MUTATIONS: u64 = 8;

/// Longest a single case may take before the smoke calls it a hang.
const CASE_WATCHDOG: Duration = Duration::from_secs(60);

/// splitmix64: a tiny, fixed pseudo-random generator, so the cases never
/// change with a dependency's version.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Between `min` and `max` bytes.
    fn bytes(&mut self, min: usize, max: usize) -> Vec<u8> {
        let len = min + (self.next() as usize) % (max - min + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// The seeds to run: `range`, or the one in `WASMCELL_FUZZ_SEED`.
fn seeds(range: std::ops::Range<u64>) -> Vec<u64> {
    match std::env::var("WASMCELL_FUZZ_SEED") {
        Ok(seed) => seed.parse().map(|s| vec![s]).unwrap_or_default(),
        Err(_) => range.collect(),
    }
}

/// Runs `check` on every seed, with a watchdog that aborts the process,
/// naming the seed, when one case outlives [`CASE_WATCHDOG`].
fn run_cases<T>(name: &str, seeds: &[u64], mut check: impl FnMut(u64) -> T) -> Vec<T> {
    let (tick, ticks) = mpsc::channel::<u64>();
    let label = name.to_string();
    let watchdog = std::thread::spawn(move || {
        let mut current = None;
        loop {
            match ticks.recv_timeout(CASE_WATCHDOG) {
                Ok(seed) => current = Some(seed),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    eprintln!("{label}: case with seed {current:?} hung for {CASE_WATCHDOG:?}");
                    std::process::abort();
                }
            }
        }
    });
    let mut results = Vec::with_capacity(seeds.len());
    for &seed in seeds {
        tick.send(seed).expect("watchdog alive");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(seed)));
        match result {
            Ok(r) => results.push(r),
            Err(panic) => {
                eprintln!("{name}: case with seed {seed} failed; replay with WASMCELL_FUZZ_SEED={seed}");
                std::panic::resume_unwind(panic);
            }
        }
    }
    drop(tick);
    watchdog.join().expect("watchdog");
    results
}

fn tally<T: std::fmt::Debug>(items: impl IntoIterator<Item = T>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(format!("{item:?}")).or_insert(0) += 1;
    }
    counts
}

#[test]
fn fuzz_smoke_policies() {
    let started = Instant::now();
    let seeds = seeds(0..POLICY_CASES);
    let cases = run_cases("policy", &seeds, |seed| {
        harness::check_policy(&SplitMix(seed).bytes(16, 2048))
    });
    let ran = cases.iter().filter(|c| matches!(c, PolicyCase::Ran(_))).count();
    println!(
        "fuzz smoke: {} policy cases in {:.1?}: {:?}",
        cases.len(),
        started.elapsed(),
        tally(&cases)
    );
    if seeds.len() as u64 == POLICY_CASES {
        // The generators must keep reaching both ends, or the smoke tests little.
        let refused = cases.iter().filter(|c| **c == PolicyCase::Refused).count();
        assert!(ran >= 50, "only {ran} policies loaded and ran the probe");
        assert!(refused >= 50, "only {refused} policies were refused");
    }
}

#[test]
fn fuzz_smoke_modules() {
    let started = Instant::now();
    let seeds = seeds(1 << 32..(1 << 32) + MODULE_CASES);
    let cases = run_cases("module", &seeds, |seed| {
        harness::check_module(&SplitMix(seed).bytes(64, 8192))
    });
    report_modules("wasm-smith module", &cases, started);
    if seeds.len() as u64 == MODULE_CASES {
        let ran = cases.iter().filter(|c| c.status.is_some()).count();
        assert!(ran >= MODULE_CASES as usize / 2, "only {ran} generated modules ran");
    }
}

/// Real guests with a few bytes changed: mostly refused by the validator,
/// sometimes a different valid program.
#[test]
fn fuzz_smoke_mutated_guests() {
    let started = Instant::now();
    let mut cases = Vec::new();
    for (i, guest) in [wasmcell_artifacts::HELLO, wasmcell_artifacts::HELLO_COMPONENT]
        .into_iter()
        .enumerate()
    {
        let original = std::fs::read(guest).expect("read a built guest");
        let seeds = seeds((2 << 32) + i as u64 * GUEST_MUTATIONS..(2 << 32) + (i as u64 + 1) * GUEST_MUTATIONS);
        cases.extend(run_cases("mutated guest", &seeds, |seed| {
            let mut rng = SplitMix(seed);
            let mut bytes = original.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() as usize) % bytes.len();
                bytes[at] = rng.next() as u8;
            }
            let limits = RunLimits {
                fuel: 5_000_000,
                memory: 16 << 20,
                timeout: Duration::from_millis(500),
                output: 4096,
            };
            harness::check_module_bytes(&bytes, limits, false)
        }));
    }
    report_modules("mutated guest", &cases, started);
}

fn report_modules(what: &str, cases: &[ModuleCase], started: Instant) {
    let generated = cases.iter().filter(|c| c.generated).count();
    let loaded = cases.iter().filter(|c| c.loaded).count();
    let worst = cases.iter().filter_map(|c| c.rss_over_limit).max();
    println!(
        "fuzz smoke: {} {what} cases in {:.1?}: {generated} generated, {loaded} loaded, statuses {:?}, worst RSS growth beyond limits.memory: {}",
        cases.len(),
        started.elapsed(),
        tally(cases.iter().filter_map(|c| c.status.map(|s| s.name()))),
        worst.map_or("not measured".to_string(), |w| format!("{} KiB", w / 1024)),
    );
}
