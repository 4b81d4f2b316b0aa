//! Needs no grants; reads stdin to EOF (forever, if the host holds it open), then prints
//! `eof after <n> bytes`.

use std::io::Read;

fn main() {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).expect("failed to read stdin");
    println!("eof after {} bytes", input.len());
}
