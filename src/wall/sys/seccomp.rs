//! The seccomp layer: which system calls the process may still make.
//!
//! The rule: **a call no healthy run makes ends the process** (`SIGSYS`,
//! `SECCOMP_RET_KILL_PROCESS`), because only a subverted runtime makes it and
//! it must stop at once; **a call the C library or the runtime may probe
//! gets `EPERM`** (an ordinary error it handles, such as `socket(AF_UNIX)`
//! for nscd or `socket(AF_NETLINK)` for `getaddrinfo`'s `AI_ADDRCONFIG`), as
//! does every call not on the allowlist. `clone3` gets `ENOSYS`: its flags
//! sit behind a pointer a filter cannot read, and on `ENOSYS` the C library
//! falls back to `clone`, whose flags are checked.
//!
//! Built with `seccompiler` rather than libseccomp: it is pure Rust, so
//! nothing needs installing where the CLI or the shim runs, and Firecracker's
//! jailer relies on it. It gives one match action per filter, so the layer is
//! three filters; for each call the kernel takes the most severe answer
//! (kill, then errno, then allow), and among errno answers the filter
//! installed last:
//! 1. `KILL` and `kill_rules` (in `filters`): kill on match, allow otherwise;
//! 2. `ALLOW` and `allow_rules`: allow on match, `EPERM` otherwise;
//! 3. `clone3`: `ENOSYS` on match, allow otherwise.
//!
//! Every filter also kills a call made with another architecture's calling
//! convention (seccompiler checks the audit architecture first), and x32
//! calls on x86_64 match nothing on the allowlist, so they get `EPERM`.

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
use crate::wall::WallPlan;
use crate::wall::{Layer, LayerState};

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(super) use filters::install;

/// The seccomp layer for `plan` on this kernel and architecture.
pub(super) fn layer() -> LayerState {
    let why_not = match cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        false => Some(format!(
            "the seccomp allowlist covers x86_64 and aarch64, not {}",
            std::env::consts::ARCH
        )),
        true => kernel_lacks_seccomp(),
    };
    LayerState {
        layer: Layer::Seccomp,
        in_effect: why_not.is_none(),
        detail: why_not.unwrap_or_default(),
    }
}

/// Why the kernel cannot take the filters, if it cannot: no seccomp filter
/// mode, or no `SECCOMP_RET_KILL_PROCESS` (Linux 4.14).
fn kernel_lacks_seccomp() -> Option<String> {
    let action: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from `action`, which
    // outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    (rc != 0).then(|| {
        format!(
            "the kernel has no seccomp filter with SECCOMP_RET_KILL_PROCESS (Linux 4.14 or later built with CONFIG_SECCOMP_FILTER has it): {}",
            std::io::Error::last_os_error()
        )
    })
}

/// On an architecture the allowlist does not cover, [`layer`] reports the
/// layer not in effect, so this is never reached; it refuses all the same.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) fn install(_plan: &WallPlan) -> Result<(), String> {
    Err(format!(
        "seccomp: the allowlist covers x86_64 and aarch64, not {}",
        std::env::consts::ARCH
    ))
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod filters;
