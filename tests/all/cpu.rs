//! The CPU-bound guests the metering benchmarks use: they compute the same
//! answer as a module and as a component, and fuel meters their work
//! deterministically.

use crate::{assert_status, assert_test_exists, both, run, stdout};
use wasmcell::{Policy, Status};

wasmcell_artifacts::foreach_cpu!(assert_test_exists);

fn metered() -> Policy {
    Policy::builder().fuel(10_000_000_000).build().unwrap()
}

/// Runs `guest` twice under fuel and checks the answer and that both runs
/// burned the same fuel; returns the fuel.
fn check(guest: &str, args: &[&str], expected: &str) -> u64 {
    let first = run(metered(), guest, args);
    assert_status(&first, Status::Exited(0));
    assert_eq!(stdout(&first).trim_end(), expected);
    let second = run(metered(), guest, args);
    assert_eq!(first.fuel_used, second.fuel_used, "fuel metering is deterministic");
    first.fuel_used.expect("fuel is metered")
}

#[test]
fn cpu_sieve() {
    for guest in both(wasmcell_artifacts::CPU_SIEVE, wasmcell_artifacts::CPU_SIEVE_COMPONENT) {
        let small = check(guest, &["1000"], "168 primes below 1000");
        let large = check(guest, &["100000"], "9592 primes below 100000");
        assert!(large > 50 * small, "more work burns more fuel: {small} vs {large}");
        check(guest, &["100000", "3"], "9592 primes below 100000");
    }
}

#[test]
fn cpu_mandelbrot() {
    for guest in both(
        wasmcell_artifacts::CPU_MANDELBROT,
        wasmcell_artifacts::CPU_MANDELBROT_COMPONENT,
    ) {
        let small = check(guest, &["16"], &format!("{} steps on a 16x16 grid", native_steps(16)));
        let large = check(guest, &["64"], "87130 steps on a 64x64 grid");
        assert!(large > 10 * small, "more work burns more fuel: {small} vs {large}");
    }
}

/// The guest's sum computed here, natively: Wasm floats are IEEE 754 like the host's.
fn native_steps(size: u32) -> u64 {
    let mut steps = 0;
    for y in 0..size {
        for x in 0..size {
            let (c_re, c_im) = (
                -2.0 + 3.0 * f64::from(x) / f64::from(size),
                -1.5 + 3.0 * f64::from(y) / f64::from(size),
            );
            let (mut re, mut im, mut n) = (0.0f64, 0.0f64, 100);
            for step in 0..100 {
                if re * re + im * im > 4.0 {
                    n = step;
                    break;
                }
                let next_re = re * re - im * im + c_re;
                im = 2.0 * re * im + c_im;
                re = next_re;
            }
            steps += n;
        }
    }
    steps
}
