//! Expects a read-only preopen at `/ro` holding `secret.txt` and a read-write preopen at
//! `/rw`; hard links and renames between them must fail in both directions.

use std::fs;
use std::io::{self, Write};

fn main() {
    // Made first so that the attempts into `/ro` have something legitimate to move.
    fs::write("/rw/tmp.txt", b"planted").expect("/rw must be writable");

    match fs::hard_link("/ro/secret.txt", "/rw/linked.txt") {
        Ok(()) => {
            // Write through the link so the host can see whether the read-only original changed.
            let written = append("/rw/linked.txt", b"mutated through hard link");
            panic!("hard_link /ro/secret.txt -> /rw/linked.txt succeeded; writing through it: {written:?}");
        }
        Err(err) => report("hard_link /ro/secret.txt -> /rw/linked.txt", err),
    }
    expect_denied("rename /ro/secret.txt -> /rw/moved.txt", || {
        fs::rename("/ro/secret.txt", "/rw/moved.txt")
    });
    expect_denied("rename /rw/tmp.txt -> /ro/planted.txt", || {
        fs::rename("/rw/tmp.txt", "/ro/planted.txt")
    });
    expect_denied("hard_link /rw/tmp.txt -> /ro/planted2.txt", || {
        fs::hard_link("/rw/tmp.txt", "/ro/planted2.txt")
    });
    let _ = fs::remove_file("/rw/tmp.txt");
}

fn expect_denied(op: &str, run: impl FnOnce() -> io::Result<()>) {
    match run() {
        Ok(()) => panic!("{op} succeeded"),
        Err(err) => report(op, err),
    }
}

fn report(op: &str, err: io::Error) {
    eprintln!("{op}: {err}");
    println!("denied {op}");
}

fn append(path: &str, bytes: &[u8]) -> io::Result<()> {
    fs::OpenOptions::new().append(true).open(path)?.write_all(bytes)
}
