//! Needs stdin; copies it to stdout until EOF, then exits 0.

use std::io::{self, Write};

fn main() {
    let mut stdout = io::stdout().lock();
    io::copy(&mut io::stdin().lock(), &mut stdout).expect("failed to copy stdin to stdout");
    stdout.flush().expect("failed to flush stdout");
}
