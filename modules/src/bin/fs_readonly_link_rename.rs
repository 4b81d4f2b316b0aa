//! Expects a read-only preopen holding a file and a read-write preopen: by default `/ro`
//! holding `secret.txt` and `/rw`, or `RO_DIR RW_DIR FILE` as arguments. Hard links and
//! renames between them must fail in both directions.

use std::fs;
use std::io::{self, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let (ro, rw, file) = (arg(1, "/ro"), arg(2, "/rw"), arg(3, "secret.txt"));
    let (secret, planted) = (format!("{ro}/{file}"), format!("{rw}/tmp.txt"));

    // Made first so that the attempts into the read-only side have something legitimate to move.
    fs::write(&planted, b"planted").expect("the read-write preopen must be writable");

    let linked = format!("{rw}/linked.txt");
    match fs::hard_link(&secret, &linked) {
        Ok(()) => {
            // Write through the link so the host can see whether the read-only original changed.
            let written = append(&linked, b"mutated through hard link");
            panic!("hard_link {secret} -> {linked} succeeded; writing through it: {written:?}");
        }
        Err(err) => report(&format!("hard_link {secret} -> {linked}"), err),
    }
    let moved = format!("{rw}/moved.txt");
    expect_denied(&format!("rename {secret} -> {moved}"), || fs::rename(&secret, &moved));
    let into_ro = format!("{ro}/planted.txt");
    expect_denied(&format!("rename {planted} -> {into_ro}"), || {
        fs::rename(&planted, &into_ro)
    });
    let link_into_ro = format!("{ro}/planted2.txt");
    expect_denied(&format!("hard_link {planted} -> {link_into_ro}"), || {
        fs::hard_link(&planted, &link_into_ro)
    });
    let _ = fs::remove_file(&planted);
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
