//! Expects a preopen at `/data` holding `link_file`, `link_dir` (absolute symlinks to host
//! paths outside it) and `rel_link` (-> `../outside.txt`); reading through any symlink that
//! leaves `/data`, including ones the guest makes itself, must fail.

use wasmcell_modules::symlink;

const READS: &[&str] = &["/data/link_file", "/data/link_dir/secret.txt", "/data/rel_link"];

/// Symlinks the guest tries to plant, as (target, link).
const MADE: &[(&str, &str)] = &[
    ("/etc/passwd", "/data/made_link"),
    ("../../outside.txt", "/data/made_link2"),
];

fn main() {
    for path in READS {
        assert_read_denied(path);
    }
    for (target, link) in MADE {
        // Creating the link may be refused or allowed; only reading through it matters.
        match symlink(target, link) {
            Ok(()) => eprintln!("{link}: created -> {target}"),
            Err(err) => eprintln!("{link}: not created: {err}"),
        }
        assert_read_denied(link);
        let _ = std::fs::remove_file(link);
    }
}

fn assert_read_denied(path: &str) {
    match std::fs::read(path) {
        Ok(bytes) => panic!("read {path} escaped the preopen ({} bytes)", bytes.len()),
        Err(err) => {
            eprintln!("{path}: {err}");
            println!("denied {path}");
        }
    }
}
