//! The parent's side of the worker protocol: start the child, send the job,
//! read its replies under caps and deadlines, and tell from how the child
//! ended what happened.

use super::protocol::{
    self, ERROR, ErrorReply, FrameError, JobHeader, MESSAGE_CAP, OUTCOME, OUTCOME_CAP, REPORT, STDERR, STDOUT,
};
use super::{Job, Worker};
use crate::engine::{LoadError, LoadErrorKind};
use crate::outcome::{Outcome, Status};
use crate::policy::Policy;
use crate::term::sanitize;
use crate::wall::WallReport;
use anyhow::{Context as _, Result, anyhow, bail};
use std::io::{Read, Write};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The most of the child's stderr kept to explain a failure.
const STDERR_CAP: usize = 16 << 10;
/// How long a child that has closed its output may take to exit before it
/// is killed.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// Extra room for captured output over `limits.output`: an `invoke` job
/// appends the call's results to stdout.
const OUTPUT_SLACK: u64 = 1 << 20;

/// What the child said, message by message, as the reader thread saw it.
enum Reply {
    Report(WallReport),
    Outcome(Box<Outcome>),
    Error(ErrorReply),
    /// The replies ended without an outcome, or broke the protocol.
    Broken(String),
}

/// How the conversation with the child ended, before looking at how the
/// child itself ended.
enum Talk {
    Finished {
        /// The wall the child sent before its guest started.
        report: WallReport,
        outcome: Box<Outcome>,
    },
    TimedOut {
        report: WallReport,
        elapsed: Duration,
    },
    Refused(ErrorReply),
    Broken {
        report: Option<WallReport>,
        why: String,
    },
}

impl Worker {
    /// Runs `job` in a new child process and returns its [`Outcome`], the
    /// same one the run would have had in this process, with
    /// [`Outcome::wall`] set to what the child's wall put up. The guest's
    /// output is captured into the outcome, never printed.
    ///
    /// The child is killed when it has not reported its wall within
    /// [`Worker::setup_timeout`], or has not sent its outcome within the
    /// policy's `limits.timeout` plus [`Worker::grace`] after that (the run
    /// is then [`Status::Timeout`]). A child the kernel killed with `SIGSYS`
    /// (the second wall's seccomp filter) is [`Status::WallStopped`], exit
    /// code 159, with the wall it reported.
    ///
    /// # Errors
    ///
    /// The job's policy does not resolve ([`crate::PolicyError`]); the
    /// program is over its `limits.module-size` or its code does not load
    /// ([`LoadError`]); the wall cannot be put up as the policy asks
    /// ([`WallError`](crate::wall::WallError)); or the worker process
    /// cannot be started, breaks the protocol, or dies otherwise than by
    /// `SIGSYS` (the message names the signal or exit status and what it
    /// printed).
    pub fn run(&self, job: &Job) -> Result<Outcome> {
        let policy = job.policy.resolve()?;
        check_job(job, &policy)?;
        let mut child = self.spawn()?;
        if let Err(err) = send_job(&mut child, job) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err);
        }
        let stderr = drain_stderr(&mut child);
        let output_cap = policy.limits().output.value.saturating_add(OUTPUT_SLACK);
        let replies = read_replies(child.stdout.take().context("the worker's stdout is piped")?, output_cap);
        let talk = self.converse(&mut child, &replies, policy.limits().timeout.value);
        let status = wait_bounded(&mut child)?;
        let stderr = stderr.recv_timeout(Duration::from_millis(200)).unwrap_or_default();
        self.conclude(talk, status, &stderr, &job.program.name)
    }

    fn spawn(&self) -> Result<Child> {
        Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "failed to start the worker process `{}`; check that it exists and serves the worker protocol (`wasmcell worker`)",
                    self.program.display()
                )
            })
    }

    /// Waits for the wall report, then for the outcome, each under its
    /// deadline; kills the child when one passes.
    fn converse(&self, child: &mut Child, replies: &Receiver<Reply>, timeout: Duration) -> Talk {
        let report = match replies.recv_timeout(self.setup_timeout) {
            Ok(Reply::Report(report)) => report,
            Ok(Reply::Error(e)) => return Talk::Refused(e),
            Ok(Reply::Outcome(_)) => return unreachable_reply(None, "an outcome before its wall report"),
            Ok(Reply::Broken(why)) => return Talk::Broken { report: None, why },
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let why = format!(
                    "sent no wall report within {} and was killed",
                    humantime::format_duration(self.setup_timeout)
                );
                return Talk::Broken { report: None, why };
            }
            Err(RecvTimeoutError::Disconnected) => return unreachable_reply(None, "nothing"),
        };
        let started = Instant::now();
        match replies.recv_timeout(timeout.saturating_add(self.grace)) {
            Ok(Reply::Outcome(outcome)) => Talk::Finished { report, outcome },
            Ok(Reply::Error(e)) => Talk::Refused(e),
            Ok(Reply::Broken(why)) => Talk::Broken {
                report: Some(report),
                why,
            },
            Ok(Reply::Report(_)) => unreachable_reply(Some(report), "a second wall report"),
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                Talk::TimedOut {
                    report,
                    elapsed: started.elapsed(),
                }
            }
            Err(RecvTimeoutError::Disconnected) => unreachable_reply(Some(report), "nothing"),
        }
    }

    /// The run's result from what the child said and how it ended: `SIGSYS`
    /// is the second wall's ending whatever was said before it.
    fn conclude(&self, talk: Talk, status: ExitStatus, stderr: &[u8], name: &str) -> Result<Outcome> {
        if is_sigsys(status) {
            let (report, outcome) = match talk {
                Talk::Finished { report, outcome } => (Some(report), Some(outcome)),
                Talk::TimedOut { report, .. } => (Some(report), None),
                Talk::Broken { report, .. } => (report, None),
                Talk::Refused(_) => (None, None),
            };
            let mut outcome = outcome
                .map(|o| *o)
                .unwrap_or_else(|| Outcome::watched(Status::WallStopped, None));
            outcome.status = Status::WallStopped;
            outcome.trap = None;
            outcome.wall = report;
            return Ok(outcome);
        }
        match talk {
            // The wall is the one the child sent before its guest started,
            // which the guest could not have shaped, whatever the outcome says.
            Talk::Finished { report, outcome } => {
                let mut outcome = *outcome;
                outcome.wall = Some(report);
                Ok(outcome)
            }
            Talk::TimedOut { report, elapsed } => {
                let mut outcome = Outcome::watched(Status::Timeout, None);
                outcome.elapsed = elapsed;
                outcome.wall = Some(report);
                Ok(outcome)
            }
            Talk::Refused(reply) => Err(reply.into_error(name)),
            Talk::Broken { why, .. } => Err(anyhow!(
                "the worker process `{}` {why} ({}); it may have crashed{}",
                self.program.display(),
                describe_exit(status),
                stderr_tail(stderr)
            )),
        }
    }
}

/// The checks the child would make first, made here so that a job that
/// cannot run fails the way it would in this process.
fn check_job(job: &Job, policy: &Policy) -> Result<()> {
    let limit = &policy.limits().module_size;
    let program = &job.program;
    if program.size > limit.value {
        return Err(LoadError {
            module: program.name.clone().into(),
            kind: LoadErrorKind::TooLarge {
                size: program.size,
                limit: limit.value,
                origin: limit.origin.cite("limits.module-size"),
            },
        }
        .into());
    }
    crate::engine::admit_program(policy, program.sha256.as_ref(), &program.signers).map_err(|kind| LoadError {
        module: program.name.clone().into(),
        kind,
    })?;
    if let Some(why) = program.engine.mismatch(policy) {
        bail!(
            "the engine `{}` was compiled for cannot enforce this policy: {why}",
            program.name
        );
    }
    Ok(())
}

/// Writes the job on a thread of its own, so that a child that does not
/// read cannot block this one; the child's replies say how it went.
fn send_job(child: &mut Child, job: &Job) -> Result<()> {
    let mut stdin = child.stdin.take().context("the worker's stdin is piped")?;
    let header = JobHeader {
        policy: job.policy.clone(),
        name: job.program.name.clone(),
        size: job.program.size,
        sha256: job.program.sha256,
        signers: job.program.signers.clone(),
        library: job.program.library,
        engine: job.program.engine,
        args: job.args.clone(),
        invoke: job.invoke.clone(),
        stdin: job.stdin.is_some(),
        record_uses: job.record_uses,
    };
    let header = serde_json::to_vec(&header).context("failed to encode the job (are its paths UTF-8?)")?;
    let (code, guest_stdin) = (job.program.code.clone(), job.stdin.clone());
    std::thread::Builder::new()
        .name("wasmcell-worker-job".into())
        .spawn(move || {
            // A child that stops reading has died or broken the protocol;
            // its replies and exit status tell which.
            let _ = protocol::write_frame(&mut stdin, protocol::JOB, &header)
                .and_then(|()| protocol::write_frame(&mut stdin, protocol::CODE, &code))
                .and_then(|()| match &guest_stdin {
                    Some(bytes) => protocol::write_frame(&mut stdin, protocol::STDIN, bytes),
                    None => Ok(()),
                })
                .and_then(|()| stdin.flush());
        })
        .context("failed to start a thread to send the worker its job")?;
    Ok(())
}

/// Keeps the first [`STDERR_CAP`] bytes of the child's stderr and drains
/// the rest, on a thread, so the child never blocks writing it.
fn drain_stderr(child: &mut Child) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = std::thread::Builder::new()
            .name("wasmcell-worker-stderr".into())
            .spawn(move || {
                let mut kept = Vec::new();
                let _ = (&mut stderr).take(STDERR_CAP as u64).read_to_end(&mut kept);
                let _ = std::io::copy(&mut stderr, &mut std::io::sink());
                let _ = tx.send(kept);
            });
    }
    rx
}

/// Reads the child's replies on a thread and hands each over as it is
/// complete; the last one is an outcome, an error or why the replies broke.
/// The thread ends with the child's stdout, or at the first bad message.
fn read_replies(mut stdout: ChildStdout, output_cap: u64) -> Receiver<Reply> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("wasmcell-worker-replies".into())
        .spawn({
            let tx = tx.clone();
            move || {
                let last = match read_report(&mut stdout) {
                    Ok(Reply::Report(report)) => {
                        let _ = tx.send(Reply::Report(report));
                        read_outcome(&mut stdout, output_cap).unwrap_or_else(|e| Reply::Broken(e.0))
                    }
                    Ok(other) => other,
                    Err(e) => Reply::Broken(e.0),
                };
                let _ = tx.send(last);
            }
        });
    if spawned.is_err() {
        let _ = tx.send(Reply::Broken("could not be read: no thread to read it on".into()));
    }
    rx
}

fn read_report(stdout: &mut ChildStdout) -> Result<Reply, FrameError> {
    match protocol::read_frame(stdout, &[REPORT, ERROR], MESSAGE_CAP)? {
        None => Ok(Reply::Broken("closed its output without reporting its wall".into())),
        Some((ERROR, payload)) => Ok(Reply::Error(protocol::parse(&payload, "an error")?)),
        Some((_, payload)) => Ok(Reply::Report(protocol::parse(&payload, "a wall report")?)),
    }
}

fn read_outcome(stdout: &mut ChildStdout, output_cap: u64) -> Result<Reply, FrameError> {
    let payload = match protocol::read_frame(stdout, &[OUTCOME, ERROR], OUTCOME_CAP)? {
        None => return Ok(Reply::Broken("closed its output without sending an outcome".into())),
        Some((ERROR, payload)) => return Ok(Reply::Error(protocol::parse(&payload, "an error")?)),
        Some((_, payload)) => payload,
    };
    let mut outcome: Outcome = protocol::parse(&payload, "an outcome")?;
    let mut stream = |tag| match protocol::read_frame(stdout, &[tag], output_cap) {
        Ok(Some((_, bytes))) => Ok(bytes),
        Ok(None) => Err(FrameError("closed its output in the middle of an outcome".into())),
        Err(e) => Err(e),
    };
    outcome.stdout = stream(STDOUT)?;
    outcome.stderr = stream(STDERR)?;
    Ok(Reply::Outcome(Box::new(outcome)))
}

/// The reader thread always sends its last reply before it ends, and never
/// anything out of order; if that were ever broken, the run fails with the
/// reason rather than a panic.
fn unreachable_reply(report: Option<WallReport>, what: &str) -> Talk {
    Talk::Broken {
        report,
        why: format!("sent {what} where the protocol did not allow it"),
    }
}

/// Waits for the child to end, polling with growing pauses (most children
/// end within a millisecond of their last message); kills it after
/// [`EXIT_WAIT`].
fn wait_bounded(child: &mut Child) -> Result<ExitStatus> {
    let started = Instant::now();
    let mut pause = Duration::from_micros(50);
    loop {
        if let Some(status) = child.try_wait().context("failed to wait for the worker process")? {
            return Ok(status);
        }
        if started.elapsed() > EXIT_WAIT {
            let _ = child.kill();
            return child.wait().context("failed to wait for the worker process");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Whether the kernel killed the child with `SIGSYS`: what seccomp does to
/// a process that makes a forbidden system call.
pub(crate) fn is_sigsys(status: ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        status.signal() == Some(libc::SIGSYS)
    }
    #[cfg(not(unix))]
    {
        let _ = status;
        false
    }
}

/// "exit status 3", "killed by signal 11, SIGSEGV".
fn describe_exit(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            let name = match signal {
                libc::SIGSEGV => ", SIGSEGV",
                libc::SIGABRT => ", SIGABRT",
                libc::SIGKILL => ", SIGKILL",
                libc::SIGBUS => ", SIGBUS",
                libc::SIGILL => ", SIGILL",
                libc::SIGTERM => ", SIGTERM",
                libc::SIGPIPE => ", SIGPIPE",
                _ => "",
            };
            return format!("killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "ended".to_string(),
    }
}

/// What the child printed on stderr, escaped, for the error message.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let cut: String = text.chars().take(2000).collect();
    format!("; its stderr: {}", sanitize(&cut))
}
