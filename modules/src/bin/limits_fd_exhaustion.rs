//! Expects a preopen at `/data` (any access). Opens `/data` over and over and
//! holds every handle, printing a line every 256 handles. The host must stop
//! it at `limits.handles` (a trap) long before the host runs out of file
//! descriptors. Without a preopen the first open fails and it exits 0.

use std::fs::File;

fn main() {
    let mut held = Vec::new();
    loop {
        match File::open("/data") {
            Ok(file) => {
                held.push(file);
                if held.len() % 256 == 0 {
                    println!("holding {} handles", held.len());
                }
            }
            Err(err) => {
                println!("open failed after {} handles: {:?}", held.len(), err.kind());
                return;
            }
        }
    }
}
