//! The wall, put up for real. Confinement cannot be lifted, so each test
//! forks: the child (one thread after `fork`) confines itself, tries things
//! and exits; the parent checks how it ended.

use super::*;
use crate::policy::Policy;
use crate::wall::{Layer, WallPlan};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// How a forked child ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ending {
    Exited(i32),
    Signaled(i32),
}

/// Runs `body` in a forked child and returns how the child ended and what
/// it said: `Exited(0)` for `Ok`, `Exited(1)` with the message for `Err`,
/// `Exited(2)` with the message for a panic.
pub(super) fn in_child(body: impl FnOnce() -> Result<(), String>) -> (Ending, String) {
    quiet_panics_in_children();
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child only runs `body` and `_exit`s; it never returns
    // into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        IN_CHILD.store(true, Ordering::Relaxed);
        let (code, message) = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            Ok(Ok(())) => (0, String::new()),
            Ok(Err(message)) => (1, message),
            Err(panic) => (2, panic_text(panic)),
        };
        // SAFETY: `message` outlives the write; `_exit` ends the child
        // without running the parent's atexit handlers.
        unsafe {
            libc::write(fds[1], message.as_ptr().cast(), message.len());
            libc::_exit(code)
        }
    }
    // SAFETY: the parent owns both ends; the write end is closed so that
    // reading ends when the child exits.
    let mut reader = unsafe {
        libc::close(fds[1]);
        std::fs::File::from_raw_fd(fds[0])
    };
    let mut said = String::new();
    let _ = reader.read_to_string(&mut said);
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let ending = match libc::WIFSIGNALED(status) {
        true => Ending::Signaled(libc::WTERMSIG(status)),
        false => Ending::Exited(libc::WEXITSTATUS(status)),
    };
    (ending, said)
}

/// Set in a forked child (its own copy of memory).
static IN_CHILD: AtomicBool = AtomicBool::new(false);

/// Makes a child's panic print nothing: the default hook takes std's
/// backtrace lock, which another test's thread may have held at the fork,
/// and the child would wait for it forever. The message reaches the parent
/// through the pipe instead.
fn quiet_panics_in_children() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CHILD.load(Ordering::Relaxed) {
                default(info);
            }
        }));
    });
}

fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(s) => *s,
        Err(panic) => panic.downcast_ref::<&str>().map_or("panic".into(), |s| s.to_string()),
    }
}

/// Confines the child for `plan`, or says why not.
pub(super) fn confine(plan: &WallPlan) -> Result<WallReport, String> {
    apply(plan).map_err(|e| format!("confine: {e}"))
}

/// The plan of a policy written in TOML, with `{dir}` standing for `dir`.
fn plan_for(toml: &str, dir: &Path) -> WallPlan {
    let text = toml.replace("{dir}", &dir.display().to_string());
    WallPlan::for_policy(&Policy::from_toml(&text, dir).unwrap())
}

/// The errno of a failed `io::Error`, for messages and checks.
fn errno_of<T>(result: std::io::Result<T>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

/// A tree with a read-only grant `ro/` (holding `ro/in.txt`), a read-write
/// grant `rw/`, and `outside/secret.txt` under no grant.
pub(super) fn tree() -> (tempfile::TempDir, WallPlan) {
    let tmp = tempfile::tempdir().unwrap();
    for dir in ["ro", "rw", "outside"] {
        std::fs::create_dir(tmp.path().join(dir)).unwrap();
    }
    std::fs::write(tmp.path().join("ro/in.txt"), "in").unwrap();
    std::fs::write(tmp.path().join("outside/secret.txt"), "secret").unwrap();
    let plan = plan_for(
        "[[fs.dirs]]\nhost = \"{dir}/ro\"\nguest = \"/ro\"\naccess = \"read-only\"\n\
         [[fs.dirs]]\nhost = \"{dir}/rw\"\nguest = \"/rw\"\naccess = \"read-write\"\n",
        tmp.path(),
    );
    (tmp, plan)
}

pub(super) fn expect(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

#[test]
fn a_read_only_grant_can_be_read_but_not_written() {
    let (tmp, plan) = tree();
    let file = tmp.path().join("ro/in.txt");
    let (ending, said) = in_child(|| {
        confine(&plan)?;
        let read = std::fs::read_to_string(&file);
        expect(read.as_deref().ok() == Some("in"), || format!("read: {read:?}"))?;
        let write = std::fs::OpenOptions::new().append(true).open(&file);
        expect(errno_of(write) == Some(libc::EACCES), || {
            "writing a read-only grant was not refused".into()
        })?;
        let create = std::fs::write(tmp.path().join("ro/new.txt"), "x");
        expect(errno_of(create) == Some(libc::EACCES), || {
            "creating in a read-only grant was not refused".into()
        })
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

#[test]
fn a_path_outside_every_grant_cannot_be_opened() {
    let (tmp, plan) = tree();
    let (ending, said) = in_child(|| {
        confine(&plan)?;
        let secret = std::fs::read(tmp.path().join("outside/secret.txt"));
        expect(errno_of(secret) == Some(libc::EACCES), || {
            "a file outside the grants was readable".into()
        })?;
        let listing = std::fs::read_dir("/");
        expect(errno_of(listing) == Some(libc::EACCES), || "`/` could be listed".into())
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

#[test]
fn a_read_write_grant_can_create_and_rename_inside_itself() {
    let (tmp, plan) = tree();
    let rw = tmp.path().join("rw");
    let (ending, said) = in_child(|| {
        confine(&plan)?;
        std::fs::create_dir(rw.join("sub")).map_err(|e| format!("mkdir: {e}"))?;
        std::fs::write(rw.join("a.txt"), "a").map_err(|e| format!("create: {e}"))?;
        std::fs::rename(rw.join("a.txt"), rw.join("sub/b.txt")).map_err(|e| format!("rename: {e}"))?;
        std::fs::remove_file(rw.join("sub/b.txt")).map_err(|e| format!("remove: {e}"))
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
    assert!(tmp.path().join("rw/sub").is_dir());
}

#[test]
fn tcp_connect_reaches_the_allowed_port_only() {
    let tmp = tempfile::tempdir().unwrap();
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = allowed.local_addr().unwrap().port();
    let plan = plan_for(&format!("[net]\ntcp-connect = [\"127.0.0.1:{port}\"]"), tmp.path());
    let (allowed, other) = (allowed.local_addr().unwrap(), other.local_addr().unwrap());
    let (ending, said) = in_child(|| {
        confine(&plan)?;
        TcpStream::connect(allowed).map_err(|e| format!("connect to the allowed port: {e}"))?;
        let refused = TcpStream::connect(other);
        expect(errno_of(refused) == Some(libc::EACCES), || {
            "another port was reachable".into()
        })
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

/// `socket(domain, kind, 0)`'s errno, or 0 when it made a socket.
fn socket_errno(domain: i32, kind: i32) -> i32 {
    // SAFETY: socket takes no pointers; a descriptor made is closed.
    unsafe {
        let fd = libc::socket(domain, kind, 0);
        if fd >= 0 {
            libc::close(fd);
            return 0;
        }
        *libc::__errno_location()
    }
}

#[test]
fn unix_and_netlink_sockets_get_eperm() {
    let plan = WallPlan::for_policy(&Policy::deny_all());
    let (ending, said) = in_child(|| {
        confine(&plan)?;
        let unix = socket_errno(libc::AF_UNIX, libc::SOCK_STREAM);
        let netlink = socket_errno(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC);
        let tcp = socket_errno(libc::AF_INET, libc::SOCK_STREAM);
        expect((unix, netlink, tcp) == (libc::EPERM, libc::EPERM, libc::EPERM), || {
            format!("unix {unix}, netlink {netlink}, tcp without a grant {tcp}")
        })
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

#[test]
fn udp_sockets_are_refused_when_udp_is_not_granted() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan_for("[net]\ntcp-connect = [\"127.0.0.1:80\"]", tmp.path());
    assert!(plan.tcp && !plan.udp);
    let (ending, said) = in_child(|| {
        confine(&plan)?;
        let udp = socket_errno(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC);
        let tcp = socket_errno(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC);
        expect((udp, tcp) == (libc::EPERM, 0), || format!("udp {udp}, tcp {tcp}"))
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

/// Confines the child with a plan granting TCP and UDP, makes `call`, and
/// returns how the child ended.
fn ending_of_call(call: fn()) -> (Ending, String) {
    let plan = plan_for("[net]\ndns = true", Path::new("/"));
    in_child(|| {
        confine(&plan)?;
        call();
        Err("the call returned".into())
    })
}

#[test]
fn a_packet_socket_kills_the_process() {
    let ending = ending_of_call(|| {
        socket_errno(libc::AF_PACKET, libc::SOCK_RAW);
    });
    assert_eq!(ending.0, Ending::Signaled(libc::SIGSYS), "{}", ending.1);
}

#[test]
fn a_raw_socket_kills_the_process_whatever_its_flags() {
    let ending = ending_of_call(|| {
        socket_errno(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK);
    });
    assert_eq!(ending.0, Ending::Signaled(libc::SIGSYS), "{}", ending.1);
}

#[test]
fn execve_kills_the_process() {
    let ending = ending_of_call(|| {
        let _ = std::process::Command::new("/bin/true").status();
    });
    assert_eq!(ending.0, Ending::Signaled(libc::SIGSYS), "{}", ending.1);
}

#[test]
fn fork_kills_the_process() {
    let ending = ending_of_call(|| {
        // SAFETY: were fork to succeed, both processes would just return.
        unsafe { libc::fork() };
    });
    assert_eq!(ending.0, Ending::Signaled(libc::SIGSYS), "{}", ending.1);
}

#[test]
fn signalling_the_parent_kills_the_process() {
    let ending = ending_of_call(|| {
        // SAFETY: signal 0 only checks that the parent exists.
        unsafe { libc::kill(libc::getppid(), 0) };
    });
    assert_eq!(ending.0, Ending::Signaled(libc::SIGSYS), "{}", ending.1);
}

#[test]
fn a_thread_started_after_confinement_runs_and_is_confined() {
    let (tmp, plan) = tree();
    let secret = tmp.path().join("outside/secret.txt");
    let (ending, said) = in_child(|| {
        confine(&plan)?;
        let thread = std::thread::spawn(move || errno_of(std::fs::read(&secret)));
        let errno = thread.join().map_err(|_| "the thread panicked".to_string())?;
        expect(errno == Some(libc::EACCES), || {
            format!("the new thread's read gave {errno:?}")
        })
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

/// Threads that were running before the wall went up, waiting in a
/// blocking call as an async runtime's workers do, are confined too: on this
/// kernel (Landlock ABI 7, no TSYNC) each one enforces the ruleset from the
/// wall's signal handler.
#[test]
fn threads_running_before_confinement_are_confined_too() {
    let (tmp, mut plan) = tree();
    let secret = tmp.path().join("outside/secret.txt");
    let (ending, said) = in_child(move || {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let (go, wait) = std::sync::mpsc::channel::<()>();
                let secret = secret.clone();
                let thread = std::thread::spawn(move || {
                    let _ = wait.recv();
                    errno_of(std::fs::read(&secret))
                });
                (go, thread)
            })
            .collect();
        plan.mode = WallMode::Require;
        let report = confine(&plan)?;
        expect(report.complete(), || format!("{report:?}"))?;
        for (go, thread) in workers {
            let _ = go.send(());
            let errno = thread.join().map_err(|_| "a worker panicked".to_string())?;
            expect(errno == Some(libc::EACCES), || {
                format!("a worker's read gave {errno:?}")
            })?;
        }
        Ok(())
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

/// A thread that blocks the wall's signal cannot confine itself before ABI
/// 8: the wall fails as a whole rather than stand with a gap in it.
#[test]
fn a_thread_that_cannot_take_the_wall_fails_it() {
    let (_tmp, plan) = tree();
    let (ending, said) = in_child(move || {
        let (ready, started) = std::sync::mpsc::channel::<()>();
        let (_stop, wait) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            // SAFETY: blocks every signal in this thread only.
            unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
            }
            let _ = ready.send(());
            let _ = wait.recv();
        });
        let _ = started.recv();
        match apply(&plan).map_err(|e| e.kind) {
            Err(WallErrorKind::Apply(why)) if why.contains("did not take the wall") => Ok(()),
            other => Err(format!("a thread blocking signals gave {other:?}")),
        }
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

#[test]
fn require_without_the_landlock_abi_applies_nothing() {
    let (tmp, mut plan) = tree();
    plan.mode = WallMode::Require;
    plan.landlock_abi = Some(99);
    let secret = tmp.path().join("outside/secret.txt");
    let (ending, said) = in_child(|| {
        let report = match apply(&plan).map_err(|e| e.kind) {
            Err(WallErrorKind::Required(report)) => report,
            other => return Err(format!("require gave {other:?}")),
        };
        let detail = &report.layer(Layer::LandlockFilesystem).unwrap().detail;
        expect(detail.ends_with("below wall.landlock-abi 99"), || detail.clone())?;
        std::fs::read(&secret).map_err(|e| format!("the refused wall still confined: {e}"))?;
        // SAFETY: PR_GET_NO_NEW_PRIVS takes no pointers.
        let nnp = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
        expect(nnp == 0 && socket_errno(libc::AF_UNIX, libc::SOCK_STREAM) == 0, || {
            format!("no_new_privs {nnp} or seccomp went up")
        })
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

#[test]
fn probe_finds_every_layer_on_this_kernel() {
    let (_tmp, plan) = tree();
    let (ending, said) = in_child(|| {
        let report = probe(&plan);
        let abi = super::landlock::kernel_abi().0;
        expect(
            report.complete() && report.landlock_abi == Some(abi) && abi >= 6,
            || format!("{report:?}"),
        )?;
        // SAFETY: PR_GET_NO_NEW_PRIVS takes no pointers.
        let nnp = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
        expect(nnp == 0, || "probe applied no_new_privs".into())
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

#[test]
fn a_killed_process_leaves_no_core_file() {
    let plan = WallPlan::for_policy(&Policy::deny_all());
    let (ending, said) = in_child(|| {
        confine(&plan)?;
        let mut limit = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: `limit` is a valid out-pointer.
        unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) };
        expect((limit.rlim_cur, limit.rlim_max) == (0, 0), || {
            format!("RLIMIT_CORE is {limit:?}")
        })
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

/// The C library's lookup probes nscd over `AF_UNIX` first: it must get
/// `EPERM` and go on to `/etc/hosts`, not end the process.
#[test]
fn a_host_name_lookup_works_after_confinement() {
    use std::net::ToSocketAddrs;
    let plan = plan_for("[net]\ndns = true", Path::new("/"));
    let (ending, said) = in_child(|| {
        confine(&plan)?;
        let addrs: Vec<_> = "localhost:80"
            .to_socket_addrs()
            .map_err(|e| format!("lookup: {e}"))?
            .collect();
        expect(addrs.iter().any(|a| a.ip().is_loopback()), || {
            format!("localhost is {addrs:?}")
        })
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

#[test]
fn a_write_file_grant_can_be_written_but_not_read() {
    let (tmp, plan) = tree();
    let out = tmp.path().join("outside/out.txt");
    std::fs::write(&out, "").unwrap();
    let plan = plan.allow_path(&out, crate::wall::WallAccess::WriteFile, "stdio.stdout");
    let (ending, said) = in_child(|| {
        confine(&plan)?;
        std::fs::write(&out, "written").map_err(|e| format!("write: {e}"))?;
        let read = std::fs::read(&out);
        expect(errno_of(read) == Some(libc::EACCES), || {
            "a write-only file was readable".into()
        })
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "written");
}

#[test]
fn every_connect_port_is_left_to_the_first_wall_when_the_policy_allows_them_all() {
    let tmp = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let plan = plan_for("[net]\ntcp-connect = [\"127.0.0.1:*\"]", tmp.path());
    let addr = listener.local_addr().unwrap();
    let (ending, said) = in_child(|| {
        let report = confine(&plan)?;
        let network = report.layer(Layer::LandlockNetwork).unwrap();
        expect(
            network.in_effect && network.detail.starts_with("connect ports left to the first wall"),
            || format!("{network:?}"),
        )?;
        TcpStream::connect(addr).map(drop).map_err(|e| format!("connect: {e}"))
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

/// The report on kernels this machine is not: no Landlock, an old ABI, a
/// policy asking for a newer one.
#[test]
fn the_report_names_what_each_kernel_lacks() {
    let (_tmp, mut plan) = tree();
    let kernel = |abi| Kernel {
        abi,
        no_landlock: "the kernel has no Landlock",
    };
    let old = report_for(&plan, kernel(3));
    assert_eq!(old.landlock_abi, Some(3));
    assert!(old.layer(Layer::LandlockFilesystem).unwrap().in_effect);
    let network = old.layer(Layer::LandlockNetwork).unwrap();
    assert_eq!(
        (network.in_effect, network.detail.as_str()),
        (false, "needs Landlock ABI 4, the kernel's is 3")
    );
    assert!(!old.layer(Layer::LandlockScopes).unwrap().in_effect);
    let none = report_for(&plan, kernel(0));
    assert_eq!(none.landlock_abi, None);
    assert_eq!(none.missing().count(), 3, "{none:?}");
    plan.landlock_abi = Some(8);
    let below = report_for(&plan, kernel(7));
    let detail = &below.layer(Layer::LandlockScopes).unwrap().detail;
    assert_eq!(detail, "the kernel's Landlock ABI is 7, below wall.landlock-abi 8");
    assert!(below.layer(Layer::Seccomp).unwrap().in_effect && below.layer(Layer::NoNewPrivs).unwrap().in_effect);
}

#[test]
fn udp_is_named_as_left_to_the_first_wall() {
    let plan = plan_for("[net]\ndns = true", Path::new("/"));
    let report = report_for(
        &plan,
        Kernel {
            abi: 7,
            no_landlock: "",
        },
    );
    let network = report.layer(Layer::LandlockNetwork).unwrap();
    assert!(
        network.in_effect && network.detail.contains("Landlock cannot scope UDP"),
        "{network:?}"
    );
}

/// A `[[fs.files]]` grant reaches its file and lists its folder's names,
/// and nothing else in that folder can be read (a key beside a config).
#[test]
fn a_file_grant_reaches_its_file_and_not_its_neighbours() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("home")).unwrap();
    std::fs::write(tmp.path().join("home/app.conf"), "conf").unwrap();
    std::fs::write(tmp.path().join("home/id_ed25519"), "key").unwrap();
    let plan = plan_for(
        "[[fs.files]]\nhost = \"{dir}/home/app.conf\"\nguest = \"/etc/app.conf\"\naccess = \"read-only\"\n",
        tmp.path(),
    );
    let home = tmp.path().join("home");
    let (ending, said) = in_child(|| {
        confine(&plan)?;
        let conf = std::fs::read(home.join("app.conf")).map_err(|e| format!("the granted file: {e}"))?;
        expect(conf == b"conf", || "the granted file read wrong".into())?;
        std::fs::read_dir(&home).map_err(|e| format!("listing the folder: {e}"))?;
        let key = std::fs::read(home.join("id_ed25519"));
        expect(errno_of(key) == Some(libc::EACCES), || {
            "a file beside the granted one was readable".into()
        })
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

/// chmod is off the allowlist (`EPERM`), in a read-write grant too: WASI
/// cannot set modes, and Landlock does not check them.
#[test]
fn modes_cannot_be_changed_anywhere() {
    let (tmp, plan) = tree();
    let (secret, mine) = (tmp.path().join("outside/secret.txt"), tmp.path().join("rw/hook"));
    std::fs::write(&mine, "#!/bin/sh\n").unwrap();
    let (ending, said) = in_child(|| {
        confine(&plan)?;
        for path in [&secret, &mine] {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path and a mode.
            let rc = unsafe { libc::fchmodat(libc::AT_FDCWD, c.as_ptr(), 0o755, 0) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            expect(rc == -1 && errno == Some(libc::EPERM), || {
                format!("chmod of {} gave {rc} ({errno:?})", path.display())
            })?;
        }
        Ok(())
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}

/// `F_SETOWN` would have SIGIO (or `F_SETSIG`'s signal) sent to another
/// process, around the kill filter: it kills the process.
#[test]
fn naming_a_signal_owner_kills_the_process() {
    let ending = ending_of_call(|| {
        let mut fds = [0; 2];
        // SAFETY: a pipe, then its read end's owner set to the parent.
        unsafe {
            libc::pipe(fds.as_mut_ptr());
            libc::fcntl(fds[0], libc::F_SETOWN, libc::getppid());
        }
    });
    assert_eq!(ending.0, Ending::Signaled(libc::SIGSYS), "{}", ending.1);
    let ending = ending_of_call(|| {
        let mut fds = [0; 2];
        // SAFETY: a pipe, then O_ASYNC on its read end.
        unsafe {
            libc::pipe(fds.as_mut_ptr());
            libc::fcntl(fds[0], libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK);
        }
    });
    assert_eq!(ending.0, Ending::Signaled(libc::SIGSYS), "{}", ending.1);
}

/// TCP Fast Open connects from `sendto`, where Landlock's connect rule does
/// not look: it kills the process.
#[test]
fn tcp_fast_open_kills_the_process() {
    let ending = ending_of_call(|| {
        // SAFETY: a TCP socket and a sendto with MSG_FASTOPEN to a zeroed
        // IPv4 address of the right size.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let addr: libc::sockaddr_in = std::mem::zeroed();
            libc::sendto(
                fd,
                b"x".as_ptr().cast(),
                1,
                libc::MSG_FASTOPEN,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            );
        }
    });
    assert_eq!(ending.0, Ending::Signaled(libc::SIGSYS), "{}", ending.1);
}

/// Without a TCP bind grant, a socket cannot listen (on the ephemeral port a
/// listen without bind takes, which Landlock never sees); fcntl's ordinary
/// commands still work.
#[test]
fn listening_needs_a_bind_grant() {
    let plan = plan_for("[net]\ntcp-connect = [\"127.0.0.1:9\"]", Path::new("/"));
    let (ending, said) = in_child(|| {
        confine(&plan)?;
        // SAFETY: a TCP socket, flags read and set without O_ASYNC, then listen.
        let (flags, set, rc, errno) = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let flags = libc::fcntl(fd, libc::F_GETFL);
            let set = libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            let rc = libc::listen(fd, 1);
            (flags, set, rc, std::io::Error::last_os_error().raw_os_error())
        };
        expect(flags >= 0 && set == 0, || format!("fcntl gave {flags}, {set}"))?;
        expect(rc == -1 && errno == Some(libc::EPERM), || {
            format!("listen gave {rc} ({errno:?})")
        })
    });
    assert_eq!((ending, said.as_str()), (Ending::Exited(0), ""));
}
