//! Needs no grants; prints `wall_ns=<ns since the UNIX epoch>` and
//! `mono_delta_ns=<ns the monotonic clock advanced across a short busy loop>`.

use std::hint::black_box;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("wall clock before 1970");
    println!("wall_ns={}", wall.as_nanos());

    let start = Instant::now();
    let mut sum = 0u64;
    for i in 0..1000 {
        sum = black_box(sum.wrapping_add(i));
    }
    let end = Instant::now();
    black_box(sum);
    println!("mono_delta_ns={}", end.duration_since(start).as_nanos());
}
