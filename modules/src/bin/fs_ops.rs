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
//! `at:D:P` (opens folder D and keeps the handle, then reads P relative to
//! that handle with `openat`, as a program holding a folder does).
//! `retrunc:P:N:R:K` (handle A creates P and writes N bytes; then R times: A
//! seeks to 0 and writes K of the N bytes, a second handle opens P with
//! `O_TRUNC`, and A writes the rest; prints the bytes A wrote in all, or the
//! first error).
//! `nlink:P` (`stat` and then `fstat` of P opened: link count and size of
//! each) `cookies:D` (wasi-libc's `readdir` of D: `name@telldir` each)
//! `seek:D` (reads D's positions, then for each, last first, `seekdir`s
//! there and prints the name `readdir` gives next, `-` at the end).
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
        "at" => read_at(arg(0), arg(1)),
        "retrunc" => {
            let num = |i: usize| arg(i).parse().unwrap_or(0);
            retrunc(arg(0), num(1), num(2), num(3))
        }
        "nlink" => nlink(arg(0)),
        "cookies" => cookies(arg(0)),
        "seek" => seek(arg(0)),
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

/// `stat` of `path`, then `fstat` of it opened: the link count and size each
/// gives (what counts a folder's entries).
fn nlink(path: &str) -> std::io::Result<String> {
    let c = std::ffi::CString::new(path).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid C string and `st` a `stat` to write to.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::stat(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let by_path = format!("nlink {} size {}", st.st_nlink, st.st_size);
    // SAFETY: as above; the fd opened is closed before returning.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let rc = unsafe { libc::fstat(fd, &mut st) };
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(format!("{by_path}; open: nlink {} size {}", st.st_nlink, st.st_size))
}

unsafe extern "C" {
    fn telldir(d: *mut libc::DIR) -> libc::c_long;
    fn seekdir(d: *mut libc::DIR, at: libc::c_long);
}

/// The name `readdir` of `d` gives next, or `-` at the end.
///
/// # Safety
/// `d` is an open directory stream.
unsafe fn next_name(d: *mut libc::DIR) -> String {
    // SAFETY: `d` is open; the entry is read before the next `readdir`.
    let e = unsafe { libc::readdir(d) };
    if e.is_null() {
        return "-".to_string();
    }
    unsafe { std::ffi::CStr::from_ptr((*e).d_name.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn seek(path: &str) -> std::io::Result<String> {
    let c = std::ffi::CString::new(path).map_err(std::io::Error::other)?;
    // SAFETY: `d` is checked before use and closed once.
    unsafe {
        let d = libc::opendir(c.as_ptr());
        if d.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        let mut positions = Vec::new();
        while next_name(d) != "-" {
            positions.push(telldir(d));
        }
        let mut out = Vec::new();
        for at in positions.into_iter().rev() {
            seekdir(d, at);
            out.push(next_name(d));
        }
        libc::closedir(d);
        Ok(out.join(","))
    }
}

/// wasi-libc's `readdir` of `path`: each name with the position after it
/// (`telldir`, the listing's cookie).
fn cookies(path: &str) -> std::io::Result<String> {
    let c = std::ffi::CString::new(path).map_err(std::io::Error::other)?;
    let mut out = Vec::new();
    // SAFETY: `d` is checked before use and closed once; each entry is read
    // before the next `readdir`.
    unsafe {
        let d = libc::opendir(c.as_ptr());
        if d.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        loop {
            let e = libc::readdir(d);
            if e.is_null() {
                break;
            }
            let name = std::ffi::CStr::from_ptr((*e).d_name.as_ptr())
                .to_string_lossy()
                .into_owned();
            out.push(format!("{name}@{}", telldir(d)));
        }
        libc::closedir(d);
    }
    Ok(out.join(","))
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

/// Rewrites a file through one handle after another handle truncated it:
/// each round writes `n` bytes into a file that another open just emptied.
fn retrunc(path: &str, n: usize, rounds: usize, before: usize) -> std::io::Result<String> {
    let mut a = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let bytes = vec![b'r'; n];
    a.write_all(&bytes)?;
    let before = before.min(n);
    let mut written = n;
    for _ in 0..rounds {
        a.seek(SeekFrom::Start(0))?;
        a.write_all(&bytes[..before])?;
        drop(fs::OpenOptions::new().write(true).truncate(true).open(path)?);
        a.write_all(&bytes[before..])?;
        written += n;
    }
    Ok(format!("{written} bytes written"))
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

/// Reads `path` relative to a handle on the folder `dir`.
fn read_at(dir: &str, path: &str) -> std::io::Result<String> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    let folder = fs::File::open(dir)?;
    let name = CString::new(path).map_err(std::io::Error::other)?;
    // SAFETY: the folder's fd is open while `folder` lives, and `name` is
    // NUL-terminated and outlives the call.
    let fd = unsafe { libc::openat(folder.as_raw_fd(), name.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    let mut file = unsafe { fs::File::from_raw_fd(fd) };
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
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
