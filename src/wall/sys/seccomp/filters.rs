//! The three seccomp filters, as tables (see the parent module for the rule).

use crate::wall::{Ports, WallPlan};
use libc::*;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Calls no healthy run makes after set-up: the process ends with `SIGSYS`.
///
/// Left out on purpose, so they get `EPERM` like any call off the
/// allowlist: `mbind` and `set_mempolicy` (this process's own memory
/// policy), `mlock` (its own pages), `pidfd_open` (harmless: what a pidfd
/// serves, `pidfd_send_signal` and `pidfd_getfd`, is killed).
const KILL: &[c_long] = &[
    // a new program, or a new process (threads: `clone` in `kill_rules`)
    SYS_execve,
    SYS_execveat,
    #[cfg(target_arch = "x86_64")]
    SYS_fork,
    #[cfg(target_arch = "x86_64")]
    SYS_vfork,
    // another process's memory, descriptors, pages or identity
    SYS_ptrace,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_process_madvise,
    SYS_pidfd_getfd,
    SYS_kcmp,
    SYS_migrate_pages,
    SYS_move_pages,
    // signals by pidfd or by bare thread id: the run opens no pidfd, and
    // the C library signals its own threads with tgkill
    SYS_pidfd_send_signal,
    SYS_tkill,
    // mounts and the root
    SYS_mount,
    SYS_umount2,
    SYS_pivot_root,
    SYS_chroot,
    SYS_fsopen,
    SYS_fsconfig,
    SYS_fsmount,
    SYS_fspick,
    SYS_move_mount,
    SYS_open_tree,
    SYS_mount_setattr,
    // the kernel's largest attack surfaces: BPF, perf, keyrings,
    // userfaultfd, io_uring (which also runs calls seccomp never sees)
    SYS_bpf,
    SYS_perf_event_open,
    SYS_keyctl,
    SYS_add_key,
    SYS_request_key,
    SYS_userfaultfd,
    SYS_io_uring_setup,
    SYS_io_uring_enter,
    SYS_io_uring_register,
    // replacing the kernel or its modules
    SYS_kexec_load,
    SYS_kexec_file_load,
    SYS_init_module,
    SYS_finit_module,
    SYS_delete_module,
    // namespaces, and files by handle (which walks around every path rule)
    SYS_unshare,
    SYS_setns,
    SYS_open_by_handle_at,
    SYS_name_to_handle_at,
    // the machine's own state: clocks, names, swap, quotas, accounting, ports
    SYS_personality,
    SYS_acct,
    SYS_swapon,
    SYS_swapoff,
    SYS_reboot,
    SYS_settimeofday,
    SYS_clock_settime,
    SYS_clock_adjtime,
    SYS_adjtimex,
    SYS_sethostname,
    SYS_setdomainname,
    SYS_quotactl,
    SYS_lookup_dcookie,
    SYS_vhangup,
    #[cfg(target_arch = "x86_64")]
    SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    SYS_uselib,
];

/// Calls the run makes after set-up, whatever their arguments. Calls on
/// descriptors (sockets included) are here: what a descriptor reaches was
/// decided when it was opened, by Landlock and by the `socket` rules.
const ALLOW: &[c_long] = &[
    // memory: the allocator, wasmtime's linear memories and code, memory images
    SYS_mmap,
    SYS_munmap,
    SYS_mprotect,
    SYS_madvise,
    SYS_mremap,
    SYS_brk,
    SYS_membarrier,
    SYS_memfd_create,
    // threads and their synchronisation (new threads: `clone` in `allow_rules`)
    SYS_futex,
    SYS_futex_waitv,
    SYS_set_robust_list,
    SYS_rseq,
    SYS_sched_yield,
    SYS_sched_getaffinity,
    SYS_sched_getparam,
    SYS_sched_getscheduler,
    SYS_gettid,
    SYS_getpid,
    SYS_getppid,
    SYS_exit,
    SYS_exit_group,
    SYS_set_tid_address,
    SYS_restart_syscall,
    // signals within the process (sending: `kill_rules` and `allow_rules`);
    // wasmtime turns traps into signals on its alternate stacks
    SYS_rt_sigaction,
    SYS_rt_sigprocmask,
    SYS_rt_sigreturn,
    SYS_sigaltstack,
    // time and randomness
    SYS_clock_gettime,
    SYS_clock_getres,
    SYS_clock_nanosleep,
    SYS_nanosleep,
    SYS_gettimeofday,
    #[cfg(target_arch = "x86_64")]
    SYS_time,
    SYS_getrandom,
    // files: Landlock decides which paths, these are the ways in
    SYS_read,
    SYS_write,
    SYS_readv,
    SYS_writev,
    SYS_pread64,
    SYS_pwrite64,
    SYS_preadv,
    SYS_pwritev,
    SYS_preadv2,
    SYS_pwritev2,
    SYS_lseek,
    SYS_openat,
    SYS_openat2,
    SYS_close,
    SYS_close_range,
    SYS_fstat,
    SYS_newfstatat,
    SYS_statx,
    SYS_fstatfs,
    SYS_statfs,
    SYS_getdents64,
    SYS_mkdirat,
    SYS_unlinkat,
    SYS_renameat2,
    SYS_linkat,
    SYS_symlinkat,
    SYS_readlinkat,
    SYS_faccessat,
    SYS_faccessat2,
    // no chmod: WASI cannot set modes, and Landlock does not check them (an
    // escaped runtime could make a planted hook executable, or a key
    // readable)
    SYS_utimensat,
    SYS_ftruncate,
    SYS_fallocate,
    SYS_fsync,
    SYS_fdatasync,
    SYS_fadvise64,
    SYS_flock,
    // fcntl: in `allow_rules`, by command
    SYS_dup,
    SYS_dup3,
    SYS_pipe2,
    SYS_eventfd2,
    SYS_getcwd,
    SYS_sendfile,
    SYS_copy_file_range,
    SYS_splice,
    // the same, by their older x86_64 numbers, which the C library still uses
    #[cfg(target_arch = "x86_64")]
    SYS_open,
    #[cfg(target_arch = "x86_64")]
    SYS_stat,
    #[cfg(target_arch = "x86_64")]
    SYS_lstat,
    #[cfg(target_arch = "x86_64")]
    SYS_access,
    #[cfg(target_arch = "x86_64")]
    SYS_readlink,
    #[cfg(target_arch = "x86_64")]
    SYS_mkdir,
    #[cfg(target_arch = "x86_64")]
    SYS_rmdir,
    #[cfg(target_arch = "x86_64")]
    SYS_unlink,
    #[cfg(target_arch = "x86_64")]
    SYS_rename,
    #[cfg(target_arch = "x86_64")]
    SYS_renameat,
    #[cfg(target_arch = "x86_64")]
    SYS_dup2,
    #[cfg(target_arch = "x86_64")]
    SYS_getrlimit,
    // waiting on descriptors: tokio and mio, the C library
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_ppoll,
    SYS_pselect6,
    #[cfg(target_arch = "x86_64")]
    SYS_epoll_wait,
    #[cfg(target_arch = "x86_64")]
    SYS_poll,
    #[cfg(target_arch = "x86_64")]
    SYS_select,
    // sockets already made (making them: `socket` in `allow_rules`)
    SYS_connect,
    SYS_bind,
    // listen: in `allow_rules`, only with a TCP bind grant (a socket can
    // listen without binding, on a port Landlock never sees)
    SYS_accept,
    SYS_accept4,
    SYS_getsockname,
    SYS_getpeername,
    SYS_setsockopt,
    SYS_getsockopt,
    SYS_sendto,
    SYS_recvfrom,
    SYS_sendmsg,
    SYS_recvmsg,
    SYS_sendmmsg,
    SYS_recvmmsg,
    SYS_shutdown,
    // who and where the process is, read only
    SYS_uname,
    SYS_sysinfo,
    SYS_getrusage,
    SYS_getuid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getegid,
    SYS_getresuid,
    SYS_getresgid,
    SYS_getgroups,
    // another filter can only narrow this one
    SYS_seccomp,
];

/// The `ioctl` requests the run makes: non-blocking mode, bytes waiting,
/// close-on-exec, and "is this a terminal, how wide". Nothing else: among
/// the rest, `TIOCSTI` types into the user's terminal.
const IOCTLS: &[Ioctl] = &[FIONBIO, FIONREAD, FIOCLEX, FIONCLEX, TCGETS, TIOCGWINSZ];

/// An `ioctl` request as the filter compares it (the kernel reads 32 bits).
#[allow(
    clippy::unnecessary_cast,
    reason = "libc's Ioctl is c_ulong on glibc and c_int on musl; only the first makes this cast a no-op"
)]
fn ioctl_request(request: Ioctl) -> u64 {
    request as u64
}

/// The `prctl` options the run uses: thread names (std names its threads),
/// naming anonymous memory (the C library's allocator), and setting
/// no_new_privs again, which changes nothing but precedes each filter
/// seccompiler installs. Not `PR_GET_SECCOMP` or any other: nothing in a run
/// asks, and each one is kernel surface.
const PRCTLS: &[c_int] = &[PR_SET_NAME, PR_GET_NAME, PR_SET_VMA, PR_SET_NO_NEW_PRIVS];

/// `clone` flags that make a namespace: killed even on a thread.
const CLONE_NAMESPACES: &[c_int] = &[
    CLONE_NEWNS,
    CLONE_NEWCGROUP,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWUSER,
    CLONE_NEWPID,
    CLONE_NEWNET,
];

/// A socket's type is in the low 4 bits of `socket`'s second argument;
/// `SOCK_NONBLOCK` and `SOCK_CLOEXEC` ride above them.
const SOCK_TYPE_MASK: u64 = 0xf;

/// `SOCK_PACKET`, the old packet socket type (libc deprecates the name in
/// favour of `AF_PACKET`, which is killed too).
const SOCK_PACKET_TYPE: u64 = 10;

/// The `fcntl` commands a run uses: duplicating, descriptor and status
/// flags (`F_SETFL` only without `O_ASYNC`, in the rules), locks, seals and
/// pipe sizes.
const FCNTL_ALLOW: &[c_int] = &[
    F_DUPFD,
    F_DUPFD_CLOEXEC,
    F_GETFD,
    F_SETFD,
    F_GETFL,
    F_GETLK,
    F_SETLK,
    F_SETLKW,
    F_OFD_GETLK,
    F_OFD_SETLK,
    F_OFD_SETLKW,
    F_ADD_SEALS,
    F_GET_SEALS,
    F_GETPIPE_SZ,
];

/// The `fcntl` commands that signal another process (`F_SETOWN` and kin
/// name who gets SIGIO or the `F_SETSIG` signal), which a healthy run never
/// makes: they kill the process.
const FCNTL_KILL: &[c_int] = &[F_SETOWN, F_SETOWN_EX, F_SETSIG, F_NOTIFY, F_SETLEASE];

/// `fcntl.h` values the libc crate leaves out for this target (the same on
/// every Linux architecture).
const F_SETSIG: c_int = 10;
const F_SETOWN_EX: c_int = 15;

type Rules = Vec<(c_long, Vec<SeccompRule>)>;

/// One comparison of a 32-bit argument (the kernel reads these as `int`).
fn arg(index: u8, op: Op, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(index, Len::Dword, op, value).map_err(|e| format!("seccomp: {e}"))
}

/// One comparison of a full 64-bit argument (a pointer).
fn arg64(index: u8, op: Op, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(index, Len::Qword, op, value).map_err(|e| format!("seccomp: {e}"))
}

/// A rule that matches when every condition holds.
fn when(conditions: Vec<Result<SeccompCondition, String>>) -> Result<SeccompRule, String> {
    let conditions = conditions.into_iter().collect::<Result<Vec<_>, _>>()?;
    SeccompRule::new(conditions).map_err(|e| format!("seccomp: {e}"))
}

/// The kills that depend on arguments.
fn kill_rules(pid: u32) -> Result<Rules, String> {
    let pid = u64::from(pid);
    // A new process: clone without CLONE_THREAD, or any namespace flag.
    let mut clone = vec![when(vec![arg(0, Op::MaskedEq(CLONE_THREAD as u64), 0)])?];
    for &flag in CLONE_NAMESPACES {
        clone.push(when(vec![arg(0, Op::MaskedEq(flag as u64), flag as u64)])?);
    }
    // Packet and raw sockets: they walk around Landlock's port rules.
    let socket = vec![
        when(vec![arg(0, Op::Eq, AF_PACKET as u64)])?,
        when(vec![arg(1, Op::MaskedEq(SOCK_TYPE_MASK), SOCK_RAW as u64)])?,
        when(vec![arg(1, Op::MaskedEq(SOCK_TYPE_MASK), SOCK_PACKET_TYPE)])?,
    ];
    // A signal aimed anywhere but this process (kill's 0 and -1 too).
    let elsewhere = || when(vec![arg(0, Op::Ne, pid)]).map(|r| vec![r]);
    // Signals by descriptor: an owner (another process) for SIGIO or a
    // chosen signal, directory notifications, leases, and O_ASYNC, which
    // turns them on.
    let mut fcntl = FCNTL_KILL
        .iter()
        .map(|&cmd| when(vec![arg(1, Op::Eq, cmd as u64)]))
        .collect::<Result<Vec<_>, _>>()?;
    fcntl.push(when(vec![
        arg(1, Op::Eq, F_SETFL as u64),
        arg(2, Op::MaskedEq(O_ASYNC as u64), O_ASYNC as u64),
    ])?);
    // TCP Fast Open connects from sendto/sendmsg, where Landlock's connect
    // rule does not look; nothing in a run uses it.
    let fastopen =
        |index| when(vec![arg(index, Op::MaskedEq(MSG_FASTOPEN as u64), MSG_FASTOPEN as u64)]).map(|r| vec![r]);
    Ok(vec![
        (SYS_clone, clone),
        (SYS_socket, socket),
        (SYS_fcntl, fcntl),
        (SYS_sendto, fastopen(3)?),
        (SYS_sendmsg, fastopen(2)?),
        (SYS_sendmmsg, fastopen(3)?),
        (SYS_kill, elsewhere()?),
        (SYS_tgkill, elsewhere()?),
        (SYS_rt_sigqueueinfo, elsewhere()?),
        (SYS_rt_tgsigqueueinfo, elsewhere()?),
    ])
}

/// The allowed calls that depend on arguments.
fn allow_rules(plan: &WallPlan, pid: u32) -> Result<Rules, String> {
    let pid = u64::from(pid);
    let one_of = |index: u8, values: &mut dyn Iterator<Item = u64>| {
        values
            .map(|v| when(vec![arg(index, Op::Eq, v)]))
            .collect::<Result<Vec<_>, _>>()
    };
    let to_self = || when(vec![arg(0, Op::Eq, pid)]).map(|r| vec![r]);
    let mut rules = vec![
        (
            SYS_clone,
            vec![when(vec![arg(
                0,
                Op::MaskedEq(CLONE_THREAD as u64),
                CLONE_THREAD as u64,
            )])?],
        ),
        (SYS_ioctl, one_of(1, &mut IOCTLS.iter().map(|&r| ioctl_request(r)))?),
        (SYS_prctl, one_of(0, &mut PRCTLS.iter().map(|&o| o as u64))?),
        // getrlimit through prlimit64: this process, no new limit.
        (SYS_prlimit64, vec![when(vec![arg(0, Op::Eq, 0), arg64(2, Op::Eq, 0)])?]),
        (SYS_get_robust_list, vec![when(vec![arg(0, Op::Eq, 0)])?]),
        // tokio's signal handling makes a connected pair; it reaches nothing.
        (SYS_socketpair, vec![when(vec![arg(0, Op::Eq, AF_UNIX as u64)])?]),
        (SYS_kill, to_self()?),
        (SYS_tgkill, to_self()?),
        (SYS_rt_sigqueueinfo, to_self()?),
        (SYS_rt_tgsigqueueinfo, to_self()?),
    ];
    let mut fcntl = one_of(1, &mut FCNTL_ALLOW.iter().map(|&cmd| cmd as u64))?;
    fcntl.push(when(vec![
        arg(1, Op::Eq, F_SETFL as u64),
        arg(2, Op::MaskedEq(O_ASYNC as u64), 0),
    ])?);
    rules.push((SYS_fcntl, fcntl));
    let socket = socket_rules(plan)?;
    if !socket.is_empty() {
        rules.push((SYS_socket, socket));
    }
    let binds = match &plan.tcp_bind {
        Ports::Any => true,
        Ports::Only(set) => !set.is_empty(),
    };
    if binds {
        rules.push((SYS_listen, Vec::new()));
    }
    Ok(rules)
}

/// `socket`: IPv4 and IPv6 only, TCP when the plan grants TCP, UDP when it
/// grants UDP, with the default protocol or the named one (so not SCTP or
/// MPTCP streams, which Landlock's TCP rules do not see).
fn socket_rules(plan: &WallPlan) -> Result<Vec<SeccompRule>, String> {
    let mut kinds = Vec::new();
    if plan.tcp {
        kinds.push((SOCK_STREAM, IPPROTO_TCP));
    }
    if plan.udp {
        kinds.push((SOCK_DGRAM, IPPROTO_UDP));
    }
    let mut rules = Vec::new();
    for family in [AF_INET, AF_INET6] {
        for &(kind, protocol) in &kinds {
            for protocol in [0, protocol] {
                rules.push(when(vec![
                    arg(0, Op::Eq, family as u64),
                    arg(1, Op::MaskedEq(SOCK_TYPE_MASK), kind as u64),
                    arg(2, Op::Eq, protocol as u64),
                ])?);
            }
        }
    }
    Ok(rules)
}

/// Compiles one filter: `matched` for the calls of `plain` and `rules`,
/// `otherwise` for every other call.
fn compile(
    plain: &[c_long],
    rules: Rules,
    matched: SeccompAction,
    otherwise: SeccompAction,
) -> Result<BpfProgram, String> {
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = plain.iter().map(|&nr| (nr, Vec::new())).collect();
    for (nr, chain) in rules {
        if map.insert(nr, chain).is_some() {
            return Err(format!("seccomp: system call {nr} is in a table and has rules too"));
        }
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("seccomp: {e}"))?;
    let filter = SeccompFilter::new(map, otherwise, matched, arch).map_err(|e| format!("seccomp: {e}"))?;
    BpfProgram::try_from(filter).map_err(|e| format!("seccomp: {e}"))
}

/// Installs the three filters on every thread (`SECCOMP_FILTER_FLAG_TSYNC`).
/// All three are compiled before the first is installed.
pub(in crate::wall::sys) fn install(plan: &WallPlan) -> Result<(), String> {
    let pid = std::process::id();
    let kill = compile(KILL, kill_rules(pid)?, SeccompAction::KillProcess, SeccompAction::Allow)?;
    let allow = compile(
        ALLOW,
        allow_rules(plan, pid)?,
        SeccompAction::Allow,
        SeccompAction::Errno(EPERM as u32),
    )?;
    // Installed last, so its ENOSYS outranks the allowlist's EPERM.
    let clone3 = compile(
        &[SYS_clone3],
        Vec::new(),
        SeccompAction::Errno(ENOSYS as u32),
        SeccompAction::Allow,
    )?;
    for (name, program) in [
        ("the kill list", kill),
        ("the allowlist", allow),
        ("the clone3 filter", clone3),
    ] {
        seccompiler::apply_filter_all_threads(&program).map_err(|e| format!("seccomp: installing {name}: {e}"))?;
    }
    Ok(())
}
