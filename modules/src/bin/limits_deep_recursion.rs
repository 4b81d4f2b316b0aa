//! Needs no grants; recurses without bound, each frame holding a 512-byte array, so it must
//! trap on stack overflow.

use std::hint::black_box;

#[expect(unconditional_recursion, reason = "overflowing the stack is the point")]
fn recurse(n: u64) -> u64 {
    let buf = black_box([n; 64]);
    recurse(n + 1) + buf[3]
}

fn main() {
    println!("{}", recurse(black_box(0)));
}
