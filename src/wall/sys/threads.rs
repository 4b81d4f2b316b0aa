//! Landlock for every thread of the process on kernels before ABI 8.
//!
//! `landlock_restrict_self` confines the calling thread (and the threads it
//! starts later); ABI 8 adds a flag that confines every thread at once. Before
//! it, a process that already runs threads (a host's async runtime, the
//! containerd shim's) asks each of them to confine itself: a real-time
//! signal whose handler enforces the same ruleset on the thread it
//! interrupts, as the C library does when `setuid` must reach every thread.
//! Every thread is accounted for by its id, and the process is listed again
//! until no thread is left that has not taken the wall; a thread that cannot
//! (one that blocks the signal) makes the whole wall fail rather than stand
//! with a gap in it.

use std::collections::BTreeSet;
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The most threads one confinement records; more is an error.
const SLOTS: usize = 4096;
/// How long a signalled thread has to take the wall.
const WAIT: Duration = Duration::from_secs(2);

/// The ruleset the handler enforces.
static RULESET: AtomicI32 = AtomicI32::new(-1);
/// Each handled thread's id, negative when its restriction failed.
static HANDLED: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];
static HANDLED_LEN: AtomicUsize = AtomicUsize::new(0);
/// One confinement at a time: the statics above belong to it.
static BUSY: Mutex<()> = Mutex::new(());

/// The signal the handler is installed for: one of the real-time signals the
/// C library leaves free, which nothing in wasmcell, wasmtime or tokio uses.
fn wall_signal() -> libc::c_int {
    libc::SIGRTMIN() + 6
}

extern "C" fn take_the_wall(_: libc::c_int) {
    // SAFETY: only async-signal-safe calls: errno is saved and restored,
    // prctl and the Landlock system call take plain integers, gettid none.
    unsafe {
        let errno = *libc::__errno_location();
        let fd = RULESET.load(Ordering::SeqCst);
        let nnp = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        let rc = libc::syscall(libc::SYS_landlock_restrict_self, fd, 0);
        let tid = libc::gettid();
        let i = HANDLED_LEN.fetch_add(1, Ordering::SeqCst);
        if i < SLOTS {
            HANDLED[i].store(if nnp == 0 && rc == 0 { tid } else { -tid }, Ordering::SeqCst);
        }
        *libc::__errno_location() = errno;
    }
}

/// Confines every thread but the calling one with `ruleset`; returns how
/// many there were. The caller confines itself afterwards.
pub(super) fn confine_other_threads(ruleset: RawFd) -> Result<usize, String> {
    // The only thread (the CLI's run, a worker): no other can appear while
    // this one is here.
    if crate::wall::thread_count() == Some(1) {
        return Ok(0);
    }
    let _busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
    RULESET.store(ruleset, Ordering::SeqCst);
    HANDLED_LEN.store(0, Ordering::SeqCst);
    // SAFETY: a zeroed sigaction is valid; the handler is an extern "C" fn
    // that only makes async-signal-safe calls; `old` receives the previous one.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = take_the_wall as extern "C" fn(libc::c_int) as usize;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: installs the handler above for the wall's signal only.
    if unsafe { libc::sigaction(wall_signal(), &action, &mut old) } != 0 {
        return Err(format!(
            "landlock: cannot install the handler that confines other threads: {}",
            std::io::Error::last_os_error()
        ));
    }
    let result = signal_until_none_left();
    // SAFETY: puts back the handler saved above.
    unsafe { libc::sigaction(wall_signal(), &old, std::ptr::null_mut()) };
    result
}

/// Signals every thread not yet signalled, waits for each to take the wall,
/// and lists the threads again, until a listing finds none new.
fn signal_until_none_left() -> Result<usize, String> {
    // SAFETY: getpid and gettid take no arguments.
    let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
    let mut signalled = BTreeSet::new();
    loop {
        let fresh: Vec<i32> = threads()?
            .into_iter()
            .filter(|t| *t != me && !signalled.contains(t))
            .collect();
        if fresh.is_empty() {
            return Ok(signalled.len());
        }
        for tid in fresh {
            // SAFETY: signals a thread of this process with the wall's signal.
            if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, wall_signal()) } == 0 {
                signalled.insert(tid);
            }
            // ESRCH: the thread ended between the listing and the signal.
        }
        wait_for(&signalled)?;
    }
}

/// Waits until every signalled thread has taken the wall or has ended.
fn wait_for(signalled: &BTreeSet<i32>) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let handled = handled()?;
        let pending: Vec<i32> = signalled
            .iter()
            .copied()
            .filter(|t| !handled.contains(t) && std::path::Path::new(&format!("/proc/self/task/{t}")).exists())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "landlock: {} thread(s) (ids {pending:?}) did not take the wall within {} s; a thread that blocks real-time signals cannot be confined on a kernel before Landlock ABI 8",
                pending.len(),
                WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The threads that took the wall; an error naming one that could not.
fn handled() -> Result<BTreeSet<i32>, String> {
    let len = HANDLED_LEN.load(Ordering::SeqCst);
    if len > SLOTS {
        return Err(format!("landlock: more than {SLOTS} threads to confine"));
    }
    let mut done = BTreeSet::new();
    for slot in &HANDLED[..len] {
        match slot.load(Ordering::SeqCst) {
            0 => {} // written in a moment
            tid if tid < 0 => {
                return Err(format!(
                    "landlock: thread {} could not enforce the ruleset: the kernel refused it",
                    -tid
                ));
            }
            tid => {
                done.insert(tid);
            }
        }
    }
    Ok(done)
}

/// The ids of the process's threads.
fn threads() -> Result<Vec<i32>, String> {
    let entries = std::fs::read_dir("/proc/self/task")
        .map_err(|e| format!("landlock: cannot list the process's threads in /proc/self/task: {e}"))?;
    Ok(entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}
