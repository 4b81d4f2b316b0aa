//! The second wall: after set-up, the run's process confines itself with
//! the kernel's own mechanisms, so that a bug in wasmtime's code generation
//! or in wasmcell's host code that lets a guest run host code still meets a
//! wall it cannot talk its way through.
//!
//! Three layers, each applied where the kernel supports it:
//! - `PR_SET_NO_NEW_PRIVS`: nothing the process starts can gain privileges;
//! - **Landlock**: filesystem access limited to the policy's grants with their
//!   access (plus the few files the runtime still opens, listed in
//!   [`WallPlan::for_policy`]); from ABI 4, TCP bind and connect limited to the
//!   ports the policy grants; from ABI 6, no abstract Unix sockets and no
//!   signals to other processes;
//! - **seccomp**: an allowlist of the system calls a run makes, with the
//!   calls only a subverted runtime would make (new programs and processes,
//!   tracing, mounts, BPF, keyrings, io_uring, kernel modules, namespaces,
//!   raw and packet sockets, signals to other processes) ending the process
//!   at once with `SIGSYS`, and every other call off the list, which the C
//!   library or the runtime may probe, failing with `EPERM`.
//!
//! The wall covers the whole process and cannot be lifted. [`confine_current_process`]
//! applies it to the calling process; a host that runs many sandboxes in one
//! process runs each in a confined child instead (see `crate::worker`).
//! [`WallReport`] says exactly what took effect, layer by layer; nothing is
//! skipped silently.

mod plan;
mod report;
#[cfg(target_os = "linux")]
mod sys;
#[cfg(target_os = "linux")]
mod watch;

pub use plan::{DNS_FILES, MAX_WALL_PORTS, Ports, WallAccess, WallPath, WallPlan};
pub use report::{Layer, LayerState, WallReport};
#[cfg(target_os = "linux")]
pub use watch::{ChildEnd, WallChannel, Watched, close_inherited_descriptors, fork_watched};

use crate::policy::WallMode;
use std::fmt;
use std::sync::Mutex;

/// The wall this process put up, once it has (see [`current`]).
static CURRENT: Mutex<Option<WallReport>> = Mutex::new(None);

/// The wall around this process: what the last call of
/// [`confine_current_process`] put up, or `None` when it was never called.
/// Every [`Outcome`](crate::Outcome) of a run in this process carries it.
pub fn current() -> Option<WallReport> {
    CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What the wall would be for `plan` on this kernel, without applying
/// anything: the layers the kernel supports, and why each other one is
/// missing. `wasmcell check` prints it.
pub fn probe(plan: &WallPlan) -> WallReport {
    if plan.mode == WallMode::Off {
        return WallReport::down(plan.mode, "wall.mode is off");
    }
    #[cfg(target_os = "linux")]
    {
        sys::probe(plan)
    }
    #[cfg(not(target_os = "linux"))]
    {
        WallReport::down(plan.mode, "the second wall needs Linux")
    }
}

/// Confines the calling process for `plan`, irreversibly, and records the
/// result (see [`current`]).
///
/// Call it after everything the run needs from the host is open (grants,
/// stdio files, the audit file, the module and its compiled code) and
/// before the guest's first instruction. Every thread of the process is
/// confined, those already running included: seccomp is installed with
/// `SECCOMP_FILTER_FLAG_TSYNC`, which also gives every thread no_new_privs,
/// and Landlock from ABI 8 with `LANDLOCK_RESTRICT_SELF_TSYNC`. Before ABI 8,
/// Landlock confines only the calling thread, so every other thread is sent a
/// real-time signal (`SIGRTMIN + 6`) whose handler enforces the same ruleset
/// on it; the process is listed again until no thread is left that has not.
/// A thread that blocks that signal makes the call fail
/// ([`WallErrorKind::Apply`]) rather than leave it outside the wall.
///
/// - `mode = "off"`: applies nothing and reports every layer off.
/// - `mode = "auto"`: applies every layer the kernel supports; the report
///   names each one missing (print [`WallReport::missing_line`]).
/// - `mode = "require"`: applies nothing and fails with
///   [`WallErrorKind::Required`] unless every layer can take effect.
/// - `wall.landlock-abi = N` on a kernel whose Landlock ABI is below N: every
///   Landlock layer counts as not in effect ("the kernel's Landlock ABI is 7,
///   below wall.landlock-abi 8").
///
/// Before the seccomp filter goes up, `RLIMIT_CORE` is set to 0: a process
/// the filter kills must not write a core file to the host.
///
/// # Errors
///
/// [`WallError`]: a layer `require` needs is missing, or the kernel (or a
/// thread) refused a layer it claims to support (then the layers before it
/// are in place, and the process should stop).
///
/// # Security
///
/// The wall allows what `plan` allows. A plan from
/// [`WallPlan::for_policy`] allows the policy's grants and nothing else the
/// guest could ask for; anything added with [`WallPlan::allow_path`] is
/// reachable by a subverted runtime too.
pub fn confine_current_process(plan: &WallPlan) -> Result<WallReport, WallError> {
    let report = match plan.mode {
        WallMode::Off => WallReport::down(plan.mode, "wall.mode is off"),
        _ => apply(plan)?,
    };
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
    Ok(report)
}

#[cfg(target_os = "linux")]
fn apply(plan: &WallPlan) -> Result<WallReport, WallError> {
    sys::apply(plan)
}

#[cfg(not(target_os = "linux"))]
fn apply(plan: &WallPlan) -> Result<WallReport, WallError> {
    let report = WallReport::down(plan.mode, "the second wall needs Linux");
    match plan.mode {
        WallMode::Require => Err(WallError::new(WallErrorKind::Required(report))),
        _ => Ok(report),
    }
}

/// The number of threads this process has, from `/proc/self/status`, or
/// `None` when it cannot be read.
pub(crate) fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// The number of threads once the threads that are ending have gone: a
/// thread joined a moment ago (the compile pool's, say) stays listed until
/// the kernel has released it, which takes at most a few milliseconds. Waits
/// up to 200 ms for the count to drop to one.
pub(crate) fn settled_thread_count() -> Option<usize> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    loop {
        let count = thread_count();
        if count != Some(1) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        return count;
    }
}

/// The second wall could not be put up as asked. Nothing ran.
#[derive(Debug)]
pub struct WallError {
    kind: WallErrorKind,
}

/// Why the wall could not be put up.
#[derive(Debug)]
#[non_exhaustive]
pub enum WallErrorKind {
    /// `wall.mode = "require"` and a layer cannot take effect on this
    /// kernel; the report says which. Nothing was applied.
    Required(WallReport),
    /// The kernel refused a layer it supports; the message names it.
    Apply(String),
}

impl WallError {
    pub(crate) fn new(kind: WallErrorKind) -> WallError {
        WallError { kind }
    }

    /// The error `require` gives for `report`, a probe with a layer missing:
    /// for a host that checks with [`probe`] before it starts anything.
    pub fn required(report: WallReport) -> WallError {
        WallError::new(WallErrorKind::Required(report))
    }

    /// Why the wall could not be put up.
    pub fn kind(&self) -> &WallErrorKind {
        &self.kind
    }
}

impl fmt::Display for WallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            WallErrorKind::Required(report) => {
                let missing: Vec<String> = report
                    .missing()
                    .map(|l| format!("{} ({})", l.layer.name(), l.detail))
                    .collect();
                write!(
                    f,
                    "wall.mode is `require` but this kernel cannot put up {}; run on a kernel with Landlock ABI 6 or later and seccomp, or set wall.mode to `auto`",
                    missing.join(", ")
                )
            }
            WallErrorKind::Apply(why) => write!(f, "the kernel refused the second wall: {why}"),
        }
    }
}

impl std::error::Error for WallError {}
