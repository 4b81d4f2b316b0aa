//! Expects a read-only preopen at `/data` holding `existing.txt` and `sub/`; every way of
//! changing them must fail, then prints `existing.txt still <n> bytes`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};

type Op = fn() -> io::Result<()>;

const EXISTING: &str = "/data/existing.txt";

/// Each mutation, named as it is printed after `denied `.
const OPS: &[(&str, Op)] = &[
    ("create /data/new.txt", || File::create_new("/data/new.txt").map(drop)),
    ("write /data/existing.txt", || {
        OpenOptions::new().write(true).open(EXISTING)?.write_all(b"overwritten")
    }),
    ("truncate /data/existing.txt", || {
        OpenOptions::new().write(true).truncate(true).open(EXISTING).map(drop)
    }),
    ("append /data/existing.txt", || {
        OpenOptions::new().append(true).open(EXISTING)?.write_all(b"appended")
    }),
    ("set_len /data/existing.txt", || {
        File::options().read(true).write(true).open(EXISTING)?.set_len(0)
    }),
    ("remove_file /data/existing.txt", || fs::remove_file(EXISTING)),
    ("rename /data/existing.txt -> /data/renamed.txt", || {
        fs::rename(EXISTING, "/data/renamed.txt")
    }),
    ("create_dir /data/newdir", || fs::create_dir("/data/newdir")),
    ("remove_dir /data/sub", || fs::remove_dir("/data/sub")),
    ("fs::write /data/existing.txt", || fs::write(EXISTING, b"replaced")),
];

fn main() {
    for (op, run) in OPS {
        match run() {
            Ok(()) => panic!("{op} succeeded on a read-only preopen"),
            Err(err) => {
                eprintln!("{op}: {err}");
                println!("denied {op}");
            }
        }
    }
    let len = fs::read(EXISTING).expect("existing.txt must stay readable").len();
    println!("existing.txt still {len} bytes");
}
