//! Needs no grants; allocates and fills 1 MiB chunks forever, printing
//! `allocated <n> MiB` every 16 MiB, so only a memory limit stops it.

use std::hint::black_box;

const MIB: usize = 1 << 20;

fn main() {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Non-zero, so every page is written rather than left to the zeroed allocator.
        chunks.push(black_box(vec![0xa5; MIB]));
        if chunks.len().is_multiple_of(16) {
            println!("allocated {} MiB", chunks.len());
        }
    }
}
