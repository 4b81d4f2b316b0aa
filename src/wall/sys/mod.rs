//! The kernel layers of the second wall on Linux: what this kernel supports
//! ([`probe`]) and putting them up ([`apply`]).
//!
//! [`apply`] goes in this order, each step before the one that would forbid it:
//! 1. `RLIMIT_CORE` to 0, so that a process the seccomp filter kills with
//!    `SIGSYS` never writes a core file (a write to the host the guest could
//!    otherwise trigger at will);
//! 2. `PR_SET_NO_NEW_PRIVS`;
//! 3. Landlock (its own system calls are not on the seccomp allowlist);
//! 4. the seccomp filters, on every thread at once (`SECCOMP_FILTER_FLAG_TSYNC`).

mod landlock;
mod seccomp;
#[cfg(test)]
mod tests;
mod threads;

use super::{Layer, LayerState, WallError, WallErrorKind, WallPlan, WallReport};
use crate::policy::WallMode;

/// What this kernel and this process offer the wall, read once per call.
#[derive(Debug, Clone, Copy)]
struct Kernel {
    /// The kernel's Landlock ABI, 0 when it has no Landlock.
    abi: u32,
    /// Why the kernel has no Landlock, when `abi` is 0.
    no_landlock: &'static str,
}

impl Kernel {
    fn read() -> Kernel {
        let (abi, no_landlock) = landlock::kernel_abi();
        Kernel { abi, no_landlock }
    }
}

/// What the wall would be for `plan` on this kernel, applying nothing.
pub(super) fn probe(plan: &WallPlan) -> WallReport {
    report_for(plan, Kernel::read())
}

/// Confines the calling process for `plan` (see the module's doc for the order).
///
/// - `require`: when any layer cannot take effect, fails with
///   [`WallErrorKind::Required`], and nothing was applied.
/// - `auto`: applies what the kernel supports.
///
/// Every thread is confined: seccomp with `TSYNC`, Landlock with its own
/// `TSYNC` from ABI 8 and, before it, by each thread enforcing the ruleset
/// itself (`threads.rs`).
///
/// An [`WallErrorKind::Apply`] error means the kernel refused a layer it
/// claims to support; the layers before it are in place and cannot be lifted.
pub(super) fn apply(plan: &WallPlan) -> Result<WallReport, WallError> {
    let kernel = Kernel::read();
    let report = report_for(plan, kernel);
    if plan.mode == WallMode::Require && !report.complete() {
        return Err(WallError::new(WallErrorKind::Required(report)));
    }
    let in_effect = |layer: Layer| report.layer(layer).is_some_and(|l| l.in_effect);
    disable_core_dumps()?;
    if in_effect(Layer::NoNewPrivs) {
        set_no_new_privs()?;
    }
    if in_effect(Layer::LandlockFilesystem) {
        landlock::restrict_self(plan, kernel.abi).map_err(apply_error)?;
    }
    if in_effect(Layer::Seccomp) {
        seccomp::install(plan).map_err(apply_error)?;
    }
    Ok(report)
}

fn apply_error(why: String) -> WallError {
    WallError::new(WallErrorKind::Apply(why))
}

/// The report for `plan` on `kernel`: every layer of [`Layer::ALL`].
fn report_for(plan: &WallPlan, kernel: Kernel) -> WallReport {
    let landlock = landlock::layers(plan, kernel);
    let landlock_abi = landlock
        .iter()
        .any(|l| l.in_effect)
        .then(|| landlock::rules_abi(kernel.abi));
    let mut layers = vec![no_new_privs_layer()];
    layers.extend(landlock);
    layers.push(seccomp::layer());
    WallReport {
        mode: plan.mode,
        landlock_abi,
        layers,
    }
}

fn no_new_privs_layer() -> LayerState {
    // SAFETY: PR_GET_NO_NEW_PRIVS reads a flag of the calling thread and
    // takes no pointers.
    let rc = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    LayerState {
        layer: Layer::NoNewPrivs,
        in_effect: rc >= 0,
        detail: match rc >= 0 {
            true => String::new(),
            false => "the kernel does not know PR_SET_NO_NEW_PRIVS (Linux 3.5 or later has it)".into(),
        },
    }
}

/// `PR_SET_NO_NEW_PRIVS`: nothing the process runs can gain privileges
/// (setuid, file capabilities), and unprivileged seccomp and Landlock
/// become possible.
fn set_no_new_privs() -> Result<(), WallError> {
    // SAFETY: PR_SET_NO_NEW_PRIVS sets a flag of the calling process and
    // takes no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(apply_error(format!(
            "no-new-privs: prctl(PR_SET_NO_NEW_PRIVS) failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Sets `RLIMIT_CORE` to 0 (soft and hard): a process the seccomp filter
/// kills with `SIGSYS` would otherwise dump core, a write to the host the
/// guest could trigger whenever it likes.
fn disable_core_dumps() -> Result<(), WallError> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `zero` is a valid rlimit that outlives the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
    if rc != 0 {
        return Err(apply_error(format!(
            "setrlimit(RLIMIT_CORE, 0) failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// A whole run under the wall, in its own block: it reaches up to the
/// runner, which the wall's own code must not (see ARCHITECTURE.md).
#[cfg(test)]
mod sandbox_tests {
    use super::tests::{Ending, confine, expect, in_child, tree};
    use crate::policy::Policy;
    use crate::wall::thread_count;
    use crate::wall::{Layer, WallPlan};

    #[test]
    fn a_whole_sandbox_run_works_after_confinement() {
        let (tmp, _) = tree();
        let toml = format!(
            "[[fs.dirs]]\nhost = \"{}/ro\"\nguest = \"/ro\"\naccess = \"read-only\"\n",
            tmp.path().display()
        );
        let hello = r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "walled\n")
            (func (export "_start")
                (i32.store (i32.const 0) (i32.const 16))
                (i32.store (i32.const 4) (i32.const 7))
                (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
        let (ending, said) = in_child(|| {
            let policy = Policy::from_toml(&toml, tmp.path()).map_err(|e| e.to_string())?;
            let plan = WallPlan::for_policy(&policy);
            let sandbox = crate::Sandbox::builder()
                .policy(policy)
                .build()
                .map_err(|e| format!("{e:#}"))?;
            let program = sandbox
                .load_bytes("hello.wasm", hello.as_bytes())
                .map_err(|e| format!("{e:#}"))?;
            let threads = thread_count();
            let report = confine(&plan)?;
            let outcome = sandbox
                .run_program(&program, &[] as &[&str])
                .map_err(|e| format!("{e:#}"))?;
            expect(
                outcome.status == crate::Status::Exited(0) && outcome.stdout == b"walled\n",
                || format!("{:?} {:?}", outcome.status, String::from_utf8_lossy(&outcome.stdout)),
            )?;
            // One thread: every layer; more (the engine's epoch thread): seccomp
            // and no_new_privs, and Landlock only from ABI 8.
            let seccomp = report.layer(Layer::Seccomp).is_some_and(|l| l.in_effect);
            expect(seccomp && (threads != Some(1) || report.complete()), || {
                format!("{report:?}")
            })?;
            let note = format!(
                "note: {threads:?} threads before confinement; {:?}\n",
                report.missing_line()
            );
            // SAFETY: writes a valid buffer to stderr, past the harness's capture.
            unsafe { libc::write(2, note.as_ptr().cast(), note.len()) };
            Ok(())
        });
        assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
    }
}
