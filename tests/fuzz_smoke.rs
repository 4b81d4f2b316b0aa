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

use harness::{GrowthCase, HttpCase, ModuleCase, NetCase, PolicyCase, RunLimits};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wasmcell::Status;
use wasmcell::policy::Proposals;

/// Policy cases per run.
const POLICY_CASES: u64 = 1_500;
/// wasm-smith module cases per run.
const MODULE_CASES: u64 = 1_500;
/// Growth sequences per run.
const GROWTH_CASES: u64 = 600;
/// Generated `[net]` tables per run, each deciding up to 32 uses.
const NET_CASES: u64 = 3_000;
/// Generated HTTP requests per run.
const HTTP_CASES: u64 = 300;
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

// See: #27
#[test]
fn fuzz_smoke_http_requests() {
    let started = Instant::now();
    let seeds = seeds(4 << 32..(4 << 32) + HTTP_CASES);
    let guest = std::path::Path::new(wasmcell_artifacts::NET_HTTP_GET_COMPONENT);
    let cases = run_cases("http", &seeds, |seed| {
        harness::check_http(&SplitMix(seed).bytes(8, 64), guest)
    });
    println!(
        "fuzz smoke: {} HTTP requests in {:.1?}: {:?}",
        cases.len(),
        started.elapsed(),
        tally(&cases)
    );
    if seeds.len() as u64 == HTTP_CASES {
        // The generator must keep reaching every decision.
        for kind in [
            HttpCase::Served,
            HttpCase::Allowed,
            HttpCase::NotSet,
            HttpCase::Refused("HttpProtocolError"),
            HttpCase::Refused("HttpRequestUriInvalid"),
            HttpCase::Refused("HttpRequestDenied"),
        ] {
            let n = cases.iter().filter(|c| **c == kind).count();
            assert!(n >= 3, "only {n} HTTP cases ended {kind:?}");
        }
    }
}

// See: #20
#[test]
fn fuzz_smoke_growth_sequences() {
    let started = Instant::now();
    let seeds = seeds(3 << 32..(3 << 32) + GROWTH_CASES);
    let cases = run_cases("growth", &seeds, |seed| {
        harness::check_growth(&SplitMix(seed).bytes(16, 512))
    });
    let count = |f: fn(&GrowthCase) -> bool| cases.iter().filter(|c| f(c)).count();
    let stopped = count(|c| c.status == Some(Status::MemoryLimit));
    let exited = count(|c| c.status == Some(Status::Exited(0)));
    let unasked = count(|c| c.unasked_failures > 0 && c.grown > 0);
    let refused = count(|c| c.refused_by_type > 0);
    println!(
        "fuzz smoke: {} growth cases in {:.1?}: {stopped} stopped at the limit, {exited} exited, \
         {unasked} with a growth and a failure the limiter was never asked about, {refused} with a growth \
         refused by the type",
        cases.len(),
        started.elapsed(),
    );
    if seeds.len() as u64 == GROWTH_CASES {
        // The generator must keep reaching each kind of ending and the
        // sequence that once let a guest past its limit.
        for (what, n) in [
            ("stopped", stopped),
            ("exited", exited),
            ("unasked", unasked),
            ("refused", refused),
        ] {
            assert!(n >= 20, "only {n} growth cases {what}");
        }
    }
}

/// Generated `[net]` tables load and decide every generated use as the
/// reference of the README's rules says.
// See: #27
#[test]
fn fuzz_smoke_net_decisions() {
    let started = Instant::now();
    let seeds = seeds(4 << 32..(4 << 32) + NET_CASES);
    let cases: Vec<NetCase> = run_cases("net", &seeds, |seed| harness::check_net(&SplitMix(seed).bytes(0, 768)));
    let uses: usize = cases.iter().map(|c| c.uses).sum();
    let admitted: usize = cases.iter().map(|c| c.admitted).sum();
    println!(
        "fuzz smoke: {} [net] tables in {:.1?}: {uses} uses decided, {admitted} admitted",
        cases.len(),
        started.elapsed(),
    );
    if seeds.len() as u64 == NET_CASES {
        // The generator must keep producing both answers in quantity.
        assert!(
            admitted >= 4_000 && uses - admitted >= 4_000,
            "{admitted} of {uses} admitted"
        );
    }
}

// See: #27
#[test]
fn fuzz_module_check_takes_the_empty_input_and_every_limit_extreme() {
    // The empty input draws the least of every range; it once drew
    // `limits.output = 0`, which the loader refuses, and the harness's own
    // policy panicked on the first input of every long run.
    harness::check_module(&[]);
    let mut seen = Vec::new();
    for (i, input) in harness::extreme_inputs(&SplitMix(7).bytes(512, 512)).iter().enumerate() {
        let limits = RunLimits::arbitrary(&mut arbitrary::Unstructured::new(input)).expect("enough bytes");
        seen.push(limits);
        // A harness panic here names the corner.
        let ran = std::panic::catch_unwind(|| harness::check_module(input));
        assert!(ran.is_ok(), "corner {i} ({limits:?}) panicked");
    }
    let ends =
        |f: fn(&RunLimits) -> u64, lo: u64, hi: u64| seen.iter().any(|l| f(l) == lo) && seen.iter().any(|l| f(l) == hi);
    assert!(ends(|l| l.fuel, *harness::FUEL.start(), *harness::FUEL.end()));
    assert!(ends(|l| l.memory, harness::MEMORIES[0], harness::MEMORIES[4]));
    assert!(ends(
        |l| l.timeout.as_millis() as u64,
        *harness::TIMEOUT_MS.start(),
        *harness::TIMEOUT_MS.end()
    ));
    assert!(ends(|l| l.output, *harness::OUTPUT.start(), *harness::OUTPUT.end()));
    // The ranges themselves lie inside the policy's declared bounds.
    use wasmcell::Limits;
    assert!(harness::FUEL.start() >= &Limits::MIN_FUEL);
    assert!(
        harness::MEMORIES
            .iter()
            .all(|m| (Limits::MIN_MEMORY..=Limits::MAX_MEMORY).contains(m))
    );
    assert!(Duration::from_millis(*harness::TIMEOUT_MS.start()) >= Limits::MIN_TIMEOUT);
    assert!(Duration::from_millis(*harness::TIMEOUT_MS.end()) <= Limits::MAX_TIMEOUT);
    assert!(harness::OUTPUT.start() >= &Limits::MIN_OUTPUT && harness::OUTPUT.end() <= &Limits::MAX_OUTPUT);
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
                proposals: Proposals::EMPTY,
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
