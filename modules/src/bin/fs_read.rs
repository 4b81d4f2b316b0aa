//! Needs a preopen holding args[1]; copies that file to stdout unchanged, or prints
//! `error: <io::ErrorKind>` to stderr and exits 1.

use std::io::Write;

fn main() {
    let path = std::env::args().nth(1).expect("usage: fs_read <path>");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes).expect("failed to write stdout");
            stdout.flush().expect("failed to flush stdout");
        }
        Err(err) => {
            eprintln!("error: {:?}", err.kind());
            std::process::exit(1);
        }
    }
}
