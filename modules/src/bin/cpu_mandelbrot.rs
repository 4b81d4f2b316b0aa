//! Needs no grants; CPU-bound: iterates the Mandelbrot set on a SIZE×SIZE grid
//! (default 64) for up to 100 steps a point and prints the total number of steps.
//! Floating-point arithmetic and branches, no memory traffic: the benchmarks' second
//! metering workload.

use std::hint::black_box;

fn main() {
    let size: u32 = std::env::args()
        .nth(1)
        .map_or(64, |a| a.parse().expect("SIZE must be a number"));
    let mut steps: u64 = 0;
    for y in 0..size {
        for x in 0..size {
            let c_re = -2.0 + 3.0 * f64::from(x) / f64::from(size);
            let c_im = -1.5 + 3.0 * f64::from(y) / f64::from(size);
            steps += escape_steps(black_box(c_re), black_box(c_im));
        }
    }
    println!("{steps} steps on a {size}x{size} grid");
}

fn escape_steps(c_re: f64, c_im: f64) -> u64 {
    let (mut re, mut im) = (0.0f64, 0.0f64);
    for step in 0..100 {
        if re * re + im * im > 4.0 {
            return step;
        }
        let next_re = re * re - im * im + c_re;
        im = 2.0 * re * im + c_im;
        re = next_re;
    }
    100
}
