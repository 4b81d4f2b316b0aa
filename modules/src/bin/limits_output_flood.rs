//! Needs no grants; writes `flood ...` lines to stdout forever and exits 3 once a write
//! fails, so only an output cap (or a time limit) stops it.

use std::io::Write;

fn main() {
    let mut stdout = std::io::stdout().lock();
    loop {
        if writeln!(stdout, "flood flood flood flood flood flood flood flood").is_err() {
            std::process::exit(3);
        }
    }
}
