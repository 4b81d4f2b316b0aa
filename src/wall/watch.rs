//! A parent that watches the confined process: the second wall kills a
//! subverted process with `SIGSYS`, and a killed process writes no report, so
//! the one that reports it is a parent that stays outside the wall.

use super::WallReport;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{FromRawFd as _, OwnedFd};

/// The most the child may send its watcher: a wall report and a run's
/// report, whose denials and counts are bounded well below this. Anything
/// longer did not come from wasmcell, and its report is dropped.
const MAX_CHANNEL_BYTES: u64 = 16 << 20;

/// Which side of [`fork_watched`] this is.
#[derive(Debug)]
pub enum Watched {
    /// The child: it goes on to confine itself and run, and tells the parent
    /// what wall it put up through the channel.
    Child(WallChannel),
    /// The parent, after the child ended.
    Parent(ChildEnd),
}

/// How the watched child ended, and the wall it said it put up.
#[derive(Debug)]
pub struct ChildEnd {
    /// The exit status, when it exited.
    pub exited: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
    /// The wall the child reported before its guest started, if it got that
    /// far. Sent before any guest code ran, so a guest cannot have shaped it.
    pub wall: Option<WallReport>,
    /// The report the child sent after its run, if it got that far: as
    /// trustworthy as the run that made it, no more.
    pub report: Option<serde_json::Value>,
    /// Whether the watcher killed the child (`SIGKILL`) because it was still
    /// running past the limit given to [`fork_watched`], counted from the
    /// wall's message: its own deadline did not stop it.
    pub overran: bool,
}

impl ChildEnd {
    /// Whether the second wall stopped the child: it was killed by `SIGSYS`,
    /// the signal seccomp kills with.
    pub fn wall_stopped(&self) -> bool {
        self.signal == Some(libc::SIGSYS)
    }
}

/// The child's end of the channel to its watcher.
#[derive(Debug)]
pub struct WallChannel(File);

impl WallChannel {
    /// Sends the wall the child put up: the first message, sent once, before
    /// the guest starts.
    pub fn send_wall(&mut self, report: &WallReport) {
        self.send(&serde_json::to_value(report).unwrap_or_default());
    }

    /// Sends the run's report, after it ended, and closes the channel.
    pub fn send_report(mut self, report: &serde_json::Value) {
        self.send(report);
    }

    fn send(&mut self, value: &serde_json::Value) {
        // One line per message. A watcher that has gone away cannot be
        // told; the run goes on.
        let line = serde_json::to_string(value).unwrap_or_default() + "\n";
        let _ = self.0.write_all(line.as_bytes());
        let _ = self.0.flush();
    }
}

/// Splits the process in two: the child returns [`Watched::Child`] and goes
/// on to confine itself and run; the parent waits for it, forwarding
/// `SIGTERM`, `SIGHUP`, `SIGQUIT` and a `SIGINT` sent by `kill` (one from the
/// terminal reaches both already), and returns [`Watched::Parent`] once the
/// child has ended. The child dies with the parent (`PR_SET_PDEATHSIG`).
///
/// Call it while the process has one thread, before the wall goes up: the
/// parent never confines itself, and is the one that can report a child the
/// wall killed. `limit`, when given, is how long the child may run after it
/// sent its wall (its guest's whole life, deadlines included, plus a grace):
/// a child that outlives it, one whose own deadline no longer works, is
/// killed with `SIGKILL` ([`ChildEnd::overran`]).
///
/// # Errors
///
/// When the process has other threads (forking then is unsafe), or a pipe,
/// the signal mask or the fork fails.
pub fn fork_watched(limit: Option<std::time::Duration>) -> anyhow::Result<Watched> {
    let threads = super::settled_thread_count();
    if threads != Some(1) {
        anyhow::bail!(
            "cannot start a watched run: the process has {} threads; call fork_watched before any other thread starts",
            threads.map_or("an unknown number of".to_string(), |n| n.to_string())
        );
    }
    let (read, write) = std::io::pipe()?;
    let forwarded = forwarded_signals();
    let mut old = empty_sigset();
    // SAFETY: `forwarded` is an initialized set; `old` receives the previous mask.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &forwarded, &mut old) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let parent = std::process::id();
    // SAFETY: the process has one thread (checked above), so the child gets
    // a consistent copy of every lock and allocator.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let err = std::io::Error::last_os_error();
        // SAFETY: restores the mask saved above.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        return Err(err.into());
    }
    if pid == 0 {
        drop(read);
        // SAFETY: restores the mask saved before the fork, and asks for
        // SIGKILL when the parent dies; both only change this process.
        unsafe {
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        // The parent may have died before the request above took effect.
        if std::os::unix::process::parent_id() != parent {
            // SAFETY: ends this child at once; it has run nothing yet. 125 is
            // the exit-code table's "the sandbox itself failed".
            unsafe { libc::_exit(125) };
        }
        return Ok(Watched::Child(WallChannel(File::from(OwnedFd::from(write)))));
    }
    drop(write);
    let end = wait_forwarding(pid, &forwarded, OwnedFd::from(read), limit);
    // SAFETY: restores the mask saved above.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    Ok(Watched::Parent(end))
}

/// Waits for `pid`, passing on the signals a supervisor would, while
/// reading what the child sends (it may send more than a pipe holds, so the
/// pipe is read as the child writes).
fn wait_forwarding(
    pid: libc::pid_t,
    forwarded: &libc::sigset_t,
    channel: OwnedFd,
    limit: Option<std::time::Duration>,
) -> ChildEnd {
    // SAFETY: `forwarded` is an initialized set; the descriptor is owned below.
    let sfd = unsafe { libc::signalfd(-1, forwarded, libc::SFD_CLOEXEC) };
    // SAFETY: signalfd returned a new descriptor (checked to be valid).
    let sfd = (sfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(sfd) });
    let mut received = Received::default();
    let mut channel = Some(File::from(channel));
    let (mut deadline, mut overran) = (None, false);
    let status = loop {
        if let Some(status) = reap(pid) {
            break status;
        }
        if deadline.is_none() && received.bytes.contains(&b'\n') {
            deadline = limit.map(|l| std::time::Instant::now() + l);
        }
        if !overran && deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            // SAFETY: kills our own child, which outlived its limit.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            overran = true;
        }
        let ready = poll_both(sfd.as_ref(), channel.as_ref());
        if ready.channel
            && let Some(file) = &mut channel
            && !received.read_from(file)
        {
            channel = None;
        }
        if ready.signal
            && let Some(sfd) = &sfd
        {
            forward_one(sfd, pid);
        }
    };
    if let Some(file) = &mut channel {
        while received.read_from(file) {}
    }
    let mut lines = received.bytes.split(|&b| b == b'\n');
    let wall = lines.next().and_then(|l| serde_json::from_slice(l).ok());
    let report = lines.next().and_then(|l| serde_json::from_slice(l).ok());
    ChildEnd {
        exited: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        wall,
        report: report.filter(|_| !received.overflowed),
        overran,
    }
}

/// The child's status, once it has ended.
fn reap(pid: libc::pid_t) -> Option<libc::c_int> {
    let mut status = 0;
    // SAFETY: only reaps our own child, without blocking.
    let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match reaped {
        // Reaped by someone else (nothing here does that): nothing is known
        // of how it ended, which the exit-code table calls the sandbox
        // failing (125).
        r if r < 0 => Some(125 << 8),
        r if r == pid => Some(status),
        _ => None,
    }
}

/// What the child sent so far, bounded.
#[derive(Default)]
struct Received {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl Received {
    /// Reads what is there; false at the end of the channel.
    fn read_from(&mut self, file: &mut File) -> bool {
        let mut buf = [0u8; 16 * 1024];
        match file.read(&mut buf) {
            Ok(0) => false,
            Ok(n) if self.bytes.len() as u64 + n as u64 <= MAX_CHANNEL_BYTES => {
                self.bytes.extend_from_slice(&buf[..n]);
                true
            }
            Ok(_) => {
                self.overflowed = true;
                true
            }
            Err(e) => e.kind() == std::io::ErrorKind::Interrupted,
        }
    }
}

struct Ready {
    signal: bool,
    channel: bool,
}

/// Blocks until a signal or the child's bytes arrive (or a second passes,
/// so that a missed wake-up costs at most that).
fn poll_both(sfd: Option<&OwnedFd>, channel: Option<&File>) -> Ready {
    use std::os::fd::AsRawFd as _;
    let mut fds = [
        libc::pollfd {
            fd: sfd.map_or(-1, |f| f.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: channel.map_or(-1, |f| f.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfd; negative fds are ignored.
    unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
    Ready {
        signal: fds[0].revents != 0,
        channel: fds[1].revents != 0,
    }
}

/// Reads one pending signal and passes it to the child, except `SIGCHLD`
/// (the loop reaps) and a `SIGINT` from the terminal, which reached the
/// child's process group already.
fn forward_one(sfd: &OwnedFd, pid: libc::pid_t) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: a zeroed signalfd_siginfo is a valid buffer of its own size.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reads at most `size` bytes into `info`.
    let n = unsafe { libc::read(sfd.as_raw_fd(), (&raw mut info).cast(), size) };
    if usize::try_from(n).ok() != Some(size) {
        return;
    }
    let sig = i32::try_from(info.ssi_signo).unwrap_or(0);
    if sig == libc::SIGCHLD || sig == 0 || (sig == libc::SIGINT && info.ssi_code > 0) {
        return;
    }
    // SAFETY: signals our own child.
    unsafe { libc::kill(pid, sig) };
}

fn empty_sigset() -> libc::sigset_t {
    // SAFETY: sigemptyset initializes the zeroed set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    }
}

fn forwarded_signals() -> libc::sigset_t {
    let mut set = empty_sigset();
    for sig in [libc::SIGCHLD, libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: `set` is initialized and `sig` a valid signal number.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    set
}

/// Closes every descriptor above stderr that this process inherited without
/// close-on-exec (a build tool's jobserver pipe, a socket a supervisor passed
/// down, a `--report-fd` the run no longer needs), so a process about to
/// confine itself holds nothing the policy did not grant. Descriptors Rust,
/// wasmtime and wasmcell open carry close-on-exec and are kept.
///
/// Call it in a process that runs one sandbox (the CLI's run, a worker),
/// after its own descriptors are open and before the wall goes up; never in
/// a host whose own descriptors lack close-on-exec.
pub fn close_inherited_descriptors() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    // Listed first, closed after: closing while reading would shift the
    // listing (and the listing's own descriptor is close-on-exec).
    let fds: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD reads the flags of a number that may have closed
        // since the listing (then -1, skipped).
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            // SAFETY: the descriptor was inherited, and nothing in this
            // process owns it (everything this process opens is
            // close-on-exec).
            unsafe { libc::close(fd) };
        }
    }
}
