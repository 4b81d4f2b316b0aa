//! Needs no grants; spins forever without calling the host, so only fuel or epochs stop it.

use std::hint::black_box;

fn main() {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}
