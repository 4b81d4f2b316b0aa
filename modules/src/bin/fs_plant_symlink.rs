//! Needs a writable preopen holding args[1]; replaces whatever is at args[1] (a file or a
//! directory tree) with a symbolic link to args[2], as a hostile guest would to redirect the
//! host's next open of that path, and prints `planted <link> -> <target>`.

use wasmcell_modules::symlink;

use std::io;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(link), Some(target)) = (args.next(), args.next()) else {
        panic!("usage: fs_plant_symlink <link> <target>");
    };
    match std::fs::symlink_metadata(&link) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&link).unwrap_or_else(|e| panic!("remove {link}: {e}")),
        Ok(_) => std::fs::remove_file(&link).unwrap_or_else(|e| panic!("remove {link}: {e}")),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => panic!("inspect {link}: {err}"),
    }
    symlink(&target, &link).unwrap_or_else(|e| panic!("symlink {link} -> {target}: {e}"));
    println!("planted {link} -> {target}");
}
