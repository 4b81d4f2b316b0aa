//! The Landlock layers: filesystem (ABI 1), TCP ports (ABI 4), scopes (ABI 6).
//!
//! The ruleset handles every filesystem access right of the kernel's ABI, so
//! anything not granted below is refused (`EACCES`):
//! - [`WallAccess::Read`]: read files and list folders beneath the path (read
//!   only, for a file);
//! - [`WallAccess::List`]: list that folder's names (`ReadDir` alone);
//! - [`WallAccess::ReadWrite`]: every right but `Execute` and `IoctlDev`
//!   beneath the path (write, truncate, create, remove, rename and link
//!   across folders);
//! - [`WallAccess::WriteFile`]: write and truncate that one file.
//! - [`WallAccess::ReadWriteFile`]: read, write and truncate that one file.
//!
//! No path may be executed. A plan path that does not exist is skipped:
//! nothing could open it later anyway, as creating it needs a right on its
//! parent. No other path is allowed: the runtime opens everything else it
//! needs before the wall goes up.

use super::Kernel;
use crate::wall::{Layer, LayerState, Ports, WallAccess, WallPath, WallPlan};
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    RestrictSelfAttr, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use std::os::fd::AsFd;

/// The ABI from which `LANDLOCK_RESTRICT_SELF_TSYNC` confines every thread.
pub(super) const ABI_ALL_THREADS: u32 = 8;
/// The ABI from which Landlock rules TCP bind and connect.
const ABI_NETWORK: u32 = 4;
/// The ABI from which Landlock scopes abstract Unix sockets and signals.
const ABI_SCOPES: u32 = 6;

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`
/// returns the ABI version instead of a ruleset.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// The kernel's Landlock ABI (0 when it has none), and why there is none.
///
/// Asked of the kernel directly: the crate keeps its own probe private, and
/// the report must name the exact ABI.
pub(super) fn kernel_abi() -> (u32, &'static str) {
    // SAFETY: with a NULL attribute, size 0 and the VERSION flag, the call
    // reads no memory and only returns the ABI version or an error.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if let Ok(abi) = u32::try_from(rc) {
        return (abi, "");
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EPERM) => (
            0,
            "a seccomp filter already around this process refuses Landlock's system calls (a container's profile?)",
        ),
        Some(libc::EOPNOTSUPP) => (
            0,
            "Landlock is built into the kernel but not enabled (add `landlock` to the `lsm=` boot parameter)",
        ),
        _ => (
            0,
            "the kernel has no Landlock (Linux 5.13 or later built with CONFIG_SECURITY_LANDLOCK has it)",
        ),
    }
}

/// The ABI the rules are made for on a kernel with Landlock ABI `abi`: the
/// kernel's, or the newest the `landlock` crate knows when the kernel's is
/// newer still (the rights of later ABIs are then not handled).
pub(super) fn rules_abi(abi: u32) -> u32 {
    ABI::from(i32::try_from(abi).unwrap_or(i32::MAX)) as u32
}

/// The three Landlock layers for `plan` on `kernel`, in [`Layer::ALL`] order.
pub(super) fn layers(plan: &WallPlan, kernel: Kernel) -> Vec<LayerState> {
    let landlock = [Layer::LandlockFilesystem, Layer::LandlockNetwork, Layer::LandlockScopes];
    if let Some(why) = blocked(plan, kernel) {
        return landlock.iter().map(|&layer| off(layer, why.clone())).collect();
    }
    let abi = kernel.abi;
    let network = match abi >= ABI_NETWORK {
        true => on(Layer::LandlockNetwork, network_detail(plan)),
        false => off(Layer::LandlockNetwork, needs(ABI_NETWORK, abi)),
    };
    let scopes = match abi >= ABI_SCOPES {
        true => on(Layer::LandlockScopes, String::new()),
        false => off(Layer::LandlockScopes, needs(ABI_SCOPES, abi)),
    };
    vec![on(Layer::LandlockFilesystem, filesystem_detail(plan)), network, scopes]
}

/// Why no Landlock layer can take effect, if one cannot.
fn blocked(plan: &WallPlan, kernel: Kernel) -> Option<String> {
    if kernel.abi == 0 {
        return Some(kernel.no_landlock.to_string());
    }
    if let Some(least) = plan.landlock_abi.filter(|&least| kernel.abi < least) {
        return Some(format!(
            "the kernel's Landlock ABI is {}, below wall.landlock-abi {least}",
            kernel.abi
        ));
    }
    None
}

fn needs(least: u32, abi: u32) -> String {
    format!("needs Landlock ABI {least}, the kernel's is {abi}")
}

fn on(layer: Layer, detail: String) -> LayerState {
    LayerState {
        layer,
        in_effect: true,
        detail,
    }
}

fn off(layer: Layer, detail: String) -> LayerState {
    LayerState {
        layer,
        in_effect: false,
        detail,
    }
}

/// Names the plan paths that do not exist (skipped), if any.
fn filesystem_detail(plan: &WallPlan) -> String {
    let absent: Vec<String> = plan
        .paths
        .iter()
        .filter(|p| !p.path.exists())
        .map(|p| format!("`{}` ({})", p.path.display(), p.why))
        .collect();
    match absent.is_empty() {
        true => String::new(),
        false => format!("absent, so not allowed: {}", absent.join(", ")),
    }
}

/// What the network layer leaves to the first wall.
fn network_detail(plan: &WallPlan) -> String {
    let mut left = Vec::new();
    let too_many = format!("the policy allows more than {} ports", crate::wall::MAX_WALL_PORTS);
    if plan.tcp_connect == Ports::Any {
        left.push(format!("connect ports left to the first wall: {too_many}"));
    }
    if plan.tcp_bind == Ports::Any {
        left.push(format!("bind ports left to the first wall: {too_many}"));
    }
    if plan.udp {
        left.push("UDP allowed for net.dns or a UDP grant: Landlock cannot scope UDP".to_string());
    }
    left.join("; ")
}

/// Restricts the calling thread, and every other one when the ABI allows
/// (`LANDLOCK_RESTRICT_SELF_TSYNC`, ABI 8), with the rules of `plan`.
///
/// Nothing is degraded silently: every access is a hard requirement, and a
/// ruleset the kernel does not enforce in full is an error.
pub(super) fn restrict_self(plan: &WallPlan, abi: u32) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("landlock: {e}");
    let version = ABI::from(i32::try_from(abi).unwrap_or(i32::MAX));
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(version))
        .map_err(|e| fail(&e))?;
    if abi >= ABI_NETWORK {
        for (ports, access) in [
            (&plan.tcp_connect, AccessNet::ConnectTcp),
            (&plan.tcp_bind, AccessNet::BindTcp),
        ] {
            if let Ports::Only(_) = ports {
                ruleset = ruleset.handle_access(access).map_err(|e| fail(&e))?;
            }
        }
    }
    if abi >= ABI_SCOPES {
        ruleset = ruleset
            .scope(Scope::AbstractUnixSocket | Scope::Signal)
            .map_err(|e| fail(&e))?;
    }
    let mut created = ruleset.create().map_err(|e| fail(&e))?;
    for path in &plan.paths {
        created = add_path(created, path, version)?;
    }
    if abi >= ABI_NETWORK {
        created = add_ports(created, plan)?;
    }
    if abi < ABI_ALL_THREADS {
        return restrict_each_thread(created);
    }
    let status = created
        .all_threads(true)
        .map_err(|e| fail(&e))?
        .restrict_self()
        .map_err(|e| fail(&e))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(()),
        other => Err(format!("landlock: the kernel enforced the ruleset only as {other:?}")),
    }
}

/// Before ABI 8: every other thread enforces the ruleset itself (see
/// `threads.rs`), then the calling thread does. Every access was a hard
/// requirement when the ruleset was made, so an enforced ruleset is enforced
/// in full.
fn restrict_each_thread(created: RulesetCreated) -> Result<(), String> {
    use std::os::fd::AsRawFd as _;
    let fd = Option::<std::os::fd::OwnedFd>::from(created).ok_or("landlock: the ruleset has no descriptor")?;
    super::threads::confine_other_threads(fd.as_raw_fd())?;
    // SAFETY: the Landlock system call takes the ruleset's open descriptor
    // and no flags; no_new_privs is set already (the wall sets it first).
    let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd.as_raw_fd(), 0) };
    if rc != 0 {
        return Err(format!(
            "landlock: landlock_restrict_self failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Adds the rule for one plan path; a path that does not exist is skipped.
fn add_path(created: RulesetCreated, path: &WallPath, abi: ABI) -> Result<RulesetCreated, String> {
    let fd = match PathFd::new(&path.path) {
        Ok(fd) => fd,
        Err(landlock::PathFdError::OpenCall { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(created);
        }
        Err(e) => return Err(format!("landlock: {e} (for {})", path.why)),
    };
    let is_dir = rustix::fs::fstat(fd.as_fd())
        .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir())
        .map_err(|e| format!("landlock: failed to stat `{}`: {e}", path.path.display()))?;
    let mut access = access_for(path.access, abi);
    if !is_dir {
        access &= AccessFs::from_file(abi);
    }
    created
        .add_rule(PathBeneath::new(fd, access))
        .map_err(|e| format!("landlock: {e} (for `{}`, {})", path.path.display(), path.why))
}

/// The rights a plan access gives beneath its path (see the module's doc).
fn access_for(access: WallAccess, abi: ABI) -> BitFlags<AccessFs> {
    match access {
        WallAccess::Read => AccessFs::ReadFile | AccessFs::ReadDir,
        WallAccess::List => AccessFs::ReadDir.into(),
        WallAccess::ReadWrite => AccessFs::from_all(abi) & !(AccessFs::Execute | AccessFs::IoctlDev),
        WallAccess::WriteFile => AccessFs::from_file(abi) & (AccessFs::WriteFile | AccessFs::Truncate),
        WallAccess::ReadWriteFile => {
            AccessFs::from_file(abi) & (AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate)
        }
    }
}

/// One rule per allowed port, for each access the ruleset handles.
fn add_ports(mut created: RulesetCreated, plan: &WallPlan) -> Result<RulesetCreated, String> {
    for (ports, access) in [
        (&plan.tcp_connect, AccessNet::ConnectTcp),
        (&plan.tcp_bind, AccessNet::BindTcp),
    ] {
        let Ports::Only(set) = ports else { continue };
        for &port in set {
            created = created
                .add_rule(NetPort::new(port, access))
                .map_err(|e| format!("landlock: port {port}: {e}"))?;
        }
    }
    Ok(created)
}
