//! The escape drill (cargo feature `wall-drill`, for tests only; never in a
//! release build): one extra host import that lets a guest ask the *host
//! process* to do what a subverted runtime would, so a test can prove the
//! second wall refuses it (and, with `--wall off`, that the drill can
//! succeed at all).
//!
//! - Preview 1: module `wasmcell_drill`, function
//!   `attempt(what_ptr, what_len, arg_ptr, arg_len) -> i32`, two UTF-8
//!   strings in the guest's memory.
//! - Components: interface `wasmcell:drill/attempt`,
//!   `attempt: func(what: string, arg: string) -> s32`.
//!
//! Each attempt runs on a host thread spawned for it and joined, which proves
//! that threads started after the wall went up are confined too. The answer:
//! - `0`: the attempt succeeded;
//! - a positive errno: the kernel refused it;
//! - [`UNKNOWN`] (`-1`): `what` names no attempt;
//! - [`BAD_INPUT`] (`-2`): a string outside the guest's memory, not UTF-8,
//!   over [`MAX_INPUT`] bytes, or an `ARG` that is not what the attempt takes
//!   (a port, a path without NUL);
//! - [`NO_THREAD`] (`-3`): the drill's thread could not be started.
//!
//! The attempts (`what`, and what `ARG` is):
//! `read-file PATH` (open read-only, read a byte), `write-file PATH` (open
//! write-only, create, truncate, write), `list-root` (open `/` and read an
//! entry), `exec` (`execve("/bin/sh", ["sh", "-c", "true"])`: on success the
//! process *becomes* that shell and exits 0), `fork` (the child exits at
//! once, the drill waits for it), `connect PORT` (TCP to 127.0.0.1), `udp-send
//! PORT` (one datagram to 127.0.0.1), `unix-socket`, `netlink-socket`
//! (`NETLINK_ROUTE`), `packet-socket` (`SOCK_RAW`), `ptrace-parent` (attach to
//! the parent process, wait for it to stop, detach), `signal-parent`
//! (`kill(parent, 0)`), `mount DIR` (a tmpfs on DIR, then unmounted), `bpf`
//! (create a one-entry array map), `io-uring` (`io_uring_setup` with one entry).

use crate::store::{P2Ctx, State};
use anyhow::Result;
use std::ffi::CString;
use wasmtime::{Caller, Extern, StoreContextMut};
use wasmtime_wasi::p1::WasiP1Ctx;

/// `what` names no attempt.
pub const UNKNOWN: i32 = -1;
/// A string the guest passed is unreadable or not what the attempt takes.
pub const BAD_INPUT: i32 = -2;
/// The drill could not start its thread.
pub const NO_THREAD: i32 = -3;
/// The longest `what` or `arg` the drill reads, in bytes.
pub const MAX_INPUT: usize = 4096;

/// Adds `wasmcell_drill::attempt` to a preview 1 linker.
pub(super) fn add_to_p1_linker(linker: &mut wasmtime::Linker<State<WasiP1Ctx>>) -> Result<()> {
    linker
        .func_wrap(
            "wasmcell_drill",
            "attempt",
            |mut caller: Caller<'_, State<WasiP1Ctx>>, what_ptr: i32, what_len: i32, arg_ptr: i32, arg_len: i32| {
                let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
                    return BAD_INPUT;
                };
                let data = memory.data(&caller);
                match (guest_str(data, what_ptr, what_len), guest_str(data, arg_ptr, arg_len)) {
                    (Some(what), Some(arg)) => attempt_on_thread(what, arg),
                    _ => BAD_INPUT,
                }
            },
        )
        .map_err(anyhow::Error::from)?;
    Ok(())
}

/// Adds `wasmcell:drill/attempt` to a component linker.
pub(super) fn add_to_p2_linker(linker: &mut wasmtime::component::Linker<State<P2Ctx>>) -> Result<()> {
    linker
        .instance("wasmcell:drill/attempt")
        .map_err(anyhow::Error::from)?
        .func_wrap(
            "attempt",
            |_store: StoreContextMut<'_, State<P2Ctx>>, (what, arg): (String, String)| {
                let code = match what.len() <= MAX_INPUT && arg.len() <= MAX_INPUT {
                    true => attempt_on_thread(&what, &arg),
                    false => BAD_INPUT,
                };
                Ok((code,))
            },
        )
        .map_err(anyhow::Error::from)?;
    Ok(())
}

/// The UTF-8 string at `ptr..ptr + len` of the guest's memory, if it lies
/// inside it and is at most [`MAX_INPUT`] bytes.
fn guest_str(memory: &[u8], ptr: i32, len: i32) -> Option<&str> {
    let start = usize::try_from(u32::try_from(ptr).ok()?).ok()?;
    let len = usize::try_from(u32::try_from(len).ok()?).ok()?;
    if len > MAX_INPUT {
        return None;
    }
    std::str::from_utf8(memory.get(start..start.checked_add(len)?)?).ok()
}

/// Runs the attempt on a new host thread and waits for it.
fn attempt_on_thread(what: &str, arg: &str) -> i32 {
    let (what, arg) = (what.to_string(), arg.to_string());
    let spawned = std::thread::Builder::new()
        .name("wasmcell-drill".into())
        .spawn(move || attempt(&what, &arg));
    match spawned.map(|thread| thread.join()) {
        Ok(Ok(code)) => code,
        _ => NO_THREAD,
    }
}

/// The errno of the last failed libc call, as the drill answers it.
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// `0` when `ret` is not negative, else the errno.
fn answer(ret: i64) -> i32 {
    if ret < 0 { errno() } else { 0 }
}

fn attempt(what: &str, arg: &str) -> i32 {
    let port = arg.parse::<u16>().ok();
    let path = CString::new(arg).ok();
    match what {
        "read-file" => path.map_or(BAD_INPUT, |p| read_file(&p)),
        "write-file" => path.map_or(BAD_INPUT, |p| write_file(&p)),
        "list-root" => list_root(),
        "exec" => exec_shell(),
        "fork" => fork_child(),
        "connect" => port.map_or(BAD_INPUT, |p| inet(libc::SOCK_STREAM, p)),
        "udp-send" => port.map_or(BAD_INPUT, |p| inet(libc::SOCK_DGRAM, p)),
        "unix-socket" => socket(libc::AF_UNIX, libc::SOCK_STREAM, 0),
        "netlink-socket" => socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE),
        "packet-socket" => socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from((libc::ETH_P_ALL as u16).to_be()),
        ),
        "ptrace-parent" => ptrace_parent(),
        // SAFETY: kill with signal 0 only checks that the signal could be sent.
        "signal-parent" => answer(i64::from(unsafe { libc::kill(libc::getppid(), 0) })),
        "mount" => path.map_or(BAD_INPUT, |p| mount_tmpfs(&p)),
        "bpf" => bpf_map(),
        "io-uring" => io_uring(),
        _ => UNKNOWN,
    }
}

/// Closes `fd`, which the caller owns, and answers `code`.
fn close_then(fd: i32, code: i32) -> i32 {
    // SAFETY: `fd` was returned to the caller by the kernel and is closed once.
    unsafe { libc::close(fd) };
    code
}

fn read_file(path: &CString) -> i32 {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return errno();
    }
    let mut byte = 0u8;
    // SAFETY: reads at most one byte into `byte`, which lives across the call.
    let read = unsafe { libc::read(fd, (&raw mut byte).cast(), 1) };
    close_then(fd, answer(read as i64))
}

fn write_file(path: &CString) -> i32 {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), flags, 0o600) };
    if fd < 0 {
        return errno();
    }
    let text = b"written by the drill\n";
    // SAFETY: writes from `text`, which lives across the call, at most its length.
    let written = unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
    close_then(fd, answer(written as i64))
}

fn list_root() -> i32 {
    // SAFETY: a NUL-terminated literal path.
    let dir = unsafe { libc::opendir(c"/".as_ptr()) };
    if dir.is_null() {
        return errno();
    }
    // SAFETY: `dir` is the open directory stream from above, closed once below.
    let entry = unsafe { libc::readdir(dir) };
    let code = if entry.is_null() { libc::ENOENT } else { 0 };
    // SAFETY: as above.
    unsafe { libc::closedir(dir) };
    code
}

fn exec_shell() -> i32 {
    let argv = [c"sh".as_ptr(), c"-c".as_ptr(), c"true".as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: NUL-terminated literals in NULL-terminated arrays that outlive the
    // call; on success the call does not return (the process becomes the shell).
    unsafe { libc::execve(c"/bin/sh".as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    errno()
}

fn fork_child() -> i32 {
    // SAFETY: the child calls only `_exit`, which is async-signal-safe, so a
    // fork from a threaded process is sound.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return errno();
    }
    if pid == 0 {
        // SAFETY: ends the child at once, running nothing of the parent's.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked, writing into `status`.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    0
}

fn socket(domain: i32, kind: i32, protocol: i32) -> i32 {
    // SAFETY: plain system call with integer arguments.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 { errno() } else { close_then(fd, 0) }
}

/// A TCP connection (`SOCK_STREAM`) or one UDP datagram (`SOCK_DGRAM`) to
/// 127.0.0.1:`port`.
fn inet(kind: i32, port: u16) -> i32 {
    // SAFETY: plain system call with integer arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return errno();
    }
    // SAFETY: sockaddr_in is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_port = port.to_be();
    addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    let (ptr, len) = (
        (&raw const addr).cast(),
        size_of::<libc::sockaddr_in>() as libc::socklen_t,
    );
    let ret: i64 = match kind {
        // SAFETY: `addr` is a valid sockaddr_in of `len` bytes that outlives the call.
        libc::SOCK_STREAM => unsafe { libc::connect(fd, ptr, len) }.into(),
        // SAFETY: sends one byte from a static; `addr` as above.
        _ => (unsafe { libc::sendto(fd, b"x".as_ptr().cast(), 1, 0, ptr, len) }) as i64,
    };
    close_then(fd, answer(ret))
}

fn ptrace_parent() -> i32 {
    // SAFETY: getppid cannot fail.
    let parent = unsafe { libc::getppid() };
    let null = std::ptr::null_mut::<libc::c_void>();
    // SAFETY: attaching takes no memory from us.
    if unsafe { libc::ptrace(libc::PTRACE_ATTACH, parent, null, null) } < 0 {
        return errno();
    }
    // Detaching needs the parent stopped, which attaching asked for; detach
    // with no signal, so the stop is not passed on and the parent runs on.
    let mut status = 0;
    // SAFETY: waits for the tracee's stop, writing into `status`.
    unsafe { libc::waitpid(parent, &mut status, libc::__WALL) };
    // SAFETY: as for attaching.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, parent, null, null) };
    0
}

fn mount_tmpfs(dir: &CString) -> i32 {
    // SAFETY: NUL-terminated strings that outlive the call; no mount data.
    let ret = unsafe { libc::mount(c"drill".as_ptr(), dir.as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null()) };
    if ret < 0 {
        return errno();
    }
    // SAFETY: as above.
    unsafe { libc::umount(dir.as_ptr()) };
    0
}

fn bpf_map() -> i32 {
    // `union bpf_attr` for BPF_MAP_CREATE starts with map_type, key_size,
    // value_size and max_entries; the rest must be zero.
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    let mut attr = [0u32; 32];
    attr[..4].copy_from_slice(&[BPF_MAP_TYPE_ARRAY, 4, 4, 1]);
    // SAFETY: `attr` is a zeroed buffer of the size passed, alive across the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_CREATE, attr.as_mut_ptr(), size_of_val(&attr)) };
    if fd < 0 { errno() } else { close_then(fd as i32, 0) }
}

fn io_uring() -> i32 {
    // `struct io_uring_params` is 120 bytes, all zero for a default ring.
    let mut params = [0u8; 120];
    // SAFETY: `params` is a zeroed buffer of the struct's size, alive across the call.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 { errno() } else { close_then(fd as i32, 0) }
}
