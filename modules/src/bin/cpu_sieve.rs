//! Needs no grants; CPU-bound: counts the primes below N (default 100000) with a
//! sieve of Eratosthenes, N times ROUNDS (default 1), and prints the count. The
//! benchmarks use it to measure what fuel and epoch metering cost on memory-heavy
//! loops.

use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let limit: usize = args.next().map_or(100_000, |a| a.parse().expect("N must be a number"));
    let rounds: u32 = args.next().map_or(1, |a| a.parse().expect("ROUNDS must be a number"));
    let mut count = 0;
    for _ in 0..rounds {
        count = count_primes(black_box(limit));
    }
    println!("{count} primes below {limit}");
}

fn count_primes(limit: usize) -> usize {
    let mut composite = vec![false; limit];
    let mut count = 0;
    for n in 2..limit {
        if !composite[n] {
            count += 1;
            // n * n overflows wasm32's 32-bit usize past N = 65536; saturating
            // keeps it above the limit instead of wrapping below it.
            let mut multiple = n.saturating_mul(n);
            while multiple < limit {
                composite[multiple] = true;
                multiple += n;
            }
        }
    }
    count
}
