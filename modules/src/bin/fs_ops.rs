//! Runs filesystem operations named by its arguments, one per argument, and
//! prints one line each: `<op> <path> -> ok[: detail]` or `-> err <errno>`
//! (the WASI errno: 2 EACCES, 44 ENOENT, 54 ENOTDIR, ...). Never stops early,
//! so one run tries every route a test plants.
//!
//! Operations (`:` separates an operation's arguments):
//! `read:P` `write:P:TEXT` `append:P:TEXT` `mkdir:P` `rmdir:P` `rm:P` `mv:A:B`
//! `ln:A:B` (hard link) `symlink:TARGET:LINK` `stat:P` (a link itself) `meta:P`
//! (what a link leads to) `ls:DIR` (names, sorted)
//! `readlink:P` `touch:P` (sets the modified time through a file opened for reading)
//! `grow:P:N` (on one handle opened read-write: write 1 KiB, then N times seek
//! back 1 KiB, read it and write 1 KiB more; prints the final size)
//! `size:P:N` (opens an existing file for writing and sets its length to N
//! bytes, as `ftruncate` does; prints the size it then has).
//! `stale:D:R:N` (opens folder D and keeps the handle, renames D to R, makes
//! a new D with files `f1`..`fN`, then creates `f1`..`fN` through the kept
//! handle, which lands them in R; prints each create's answer).
//! `hold:D:N` (creates new files `D/h0`..`D/hN-1`, each exclusively, and keeps
//! every one open; prints how many it holds, or the first error).
//! `cp:A:B` (copies file A's bytes over B; prints how many).
//! `fill:P:OFFSET:LEN:BYTE` (overwrites LEN bytes of an existing file from
//! OFFSET with BYTE, a decimal number, as a patch of its code would).

use wasmcell_modules::symlink;

use std::io::{Read as _, Seek as _, SeekFrom};

use std::fs;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

fn run(op: &str, args: &[&str]) -> std::io::Result<String> {
    let arg = |i: usize| args.get(i).copied().unwrap_or("");
    match op {
        "read" => fs::read_to_string(arg(0)),
        "write" => fs::write(arg(0), arg(1)).map(|()| String::new()),
        "append" => fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(arg(0))
            .and_then(|mut f| f.write_all(arg(1).as_bytes()))
            .map(|()| String::new()),
        "mkdir" => fs::create_dir(arg(0)).map(|()| String::new()),
        "rmdir" => fs::remove_dir(arg(0)).map(|()| String::new()),
        "rm" => fs::remove_file(arg(0)).map(|()| String::new()),
        "mv" => fs::rename(arg(0), arg(1)).map(|()| String::new()),
        "ln" => fs::hard_link(arg(0), arg(1)).map(|()| String::new()),
        "symlink" => symlink(arg(0), arg(1)).map(|()| String::new()),
        "stat" => fs::symlink_metadata(arg(0)).map(|m| format!("{} bytes", m.len())),
        "meta" => fs::metadata(arg(0)).map(|m| format!("{} bytes", m.len())),
        "ls" => fs::read_dir(arg(0)).and_then(|entries| {
            let mut names = entries
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<std::io::Result<Vec<_>>>()?;
            names.sort();
            Ok(names.join(","))
        }),
        "readlink" => fs::read_link(arg(0)).map(|t| t.display().to_string()),
        "grow" => grow(arg(0), arg(1).parse().unwrap_or(0)),
        "size" => fs::OpenOptions::new().write(true).open(arg(0)).and_then(|f| {
            f.set_len(arg(1).parse().unwrap_or(0))?;
            Ok(format!("{} bytes", f.metadata()?.len()))
        }),
        "stale" => stale(arg(0), arg(1), arg(2).parse().unwrap_or(0)),
        "hold" => hold(arg(0), arg(1).parse().unwrap_or(0)),
        "cp" => fs::copy(arg(0), arg(1)).map(|n| format!("{n} bytes")),
        "fill" => fill(
            arg(0),
            arg(1).parse().unwrap_or(0),
            arg(2).parse().unwrap_or(0),
            arg(3).parse().unwrap_or(0),
        ),
        "touch" => fs::File::open(arg(0))
            .and_then(|f| f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400)))
            .map(|()| String::new()),
        other => Err(std::io::Error::other(format!("unknown operation `{other}`"))),
    }
}

fn fill(path: &str, offset: u64, len: usize, byte: u8) -> std::io::Result<String> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(&vec![byte; len])?;
    Ok(format!("{len} bytes"))
}

fn hold(dir: &str, n: usize) -> std::io::Result<String> {
    let mut held = Vec::new();
    for i in 0..n {
        held.push(fs::File::create_new(format!("{dir}/h{i}"))?);
    }
    Ok(format!("holding {}", held.len()))
}

fn grow(path: &str, rounds: u32) -> std::io::Result<String> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let block = [b'x'; 1024];
    f.write_all(&block)?;
    let mut back = [0u8; 1024];
    for _ in 0..rounds {
        f.seek(SeekFrom::Current(-1024))?;
        f.read_exact(&mut back)?;
        f.write_all(&block)?;
    }
    Ok(format!("{} bytes", f.metadata()?.len()))
}

/// Creates files through a handle on a folder that was renamed since it was
/// opened, beside a new folder of the old name that holds files of the same
/// names: where the handle really points decides what exists.
fn stale(dir: &str, renamed: &str, n: usize) -> std::io::Result<String> {
    use std::ffi::CString;
    let c = |s: &str| CString::new(s).map_err(std::io::Error::other);
    // SAFETY: a NUL-terminated path that outlives the call.
    let fd = unsafe { libc::open(c(dir)?.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    fs::rename(dir, renamed)?;
    fs::create_dir(dir)?;
    for i in 1..=n {
        fs::write(format!("{dir}/f{i}"), "x")?;
    }
    let mut answers = Vec::new();
    for i in 1..=n {
        let name = c(&format!("f{i}"))?;
        // SAFETY: `fd` is open and `name` is NUL-terminated and outlives the call.
        let file = unsafe { libc::openat(fd, name.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644) };
        if file < 0 {
            let e = std::io::Error::last_os_error();
            answers.push(format!("err {}", e.raw_os_error().unwrap_or(0)));
        } else {
            // SAFETY: `file` was just opened and is closed once.
            unsafe { libc::close(file) };
            answers.push("ok".to_string());
        }
    }
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    Ok(answers.join(","))
}

fn main() {
    for spec in std::env::args().skip(1) {
        let mut parts = spec.split(':');
        let op = parts.next().unwrap_or("");
        let args: Vec<&str> = parts.collect();
        match run(op, &args) {
            Ok(detail) if detail.is_empty() => println!("{spec} -> ok"),
            Ok(detail) => println!("{spec} -> ok: {detail}"),
            Err(e) => match e.raw_os_error() {
                Some(errno) => println!("{spec} -> err {errno}"),
                None => println!("{spec} -> err {e}"),
            },
        }
    }
}
