//! The child's side of the worker protocol: read the job, load the code,
//! confine this process, report the wall, run, send the outcome.

use super::protocol::{self, CODE, CODE_CAP, ERROR, ErrorReply, FrameError, JOB, JobHeader, MESSAGE_CAP, STDIN};
use crate::engine::{Engine, Intent};
use crate::outcome::Outcome;
use crate::sandbox::Sandbox;
use crate::wall::{self, WallPlan};
use anyhow::{Context as _, Result, anyhow};
use std::io::{Read, Write};

/// Serves one job of the worker protocol on this process's stdin and
/// stdout, and returns the exit code the process should end with (the
/// outcome's [`Outcome::exit_code`]). A [`Worker`](super::Worker) starts a
/// process that calls this; nothing else should.
///
/// In order: reads the job (bounded), resolves its policy, loads the
/// compiled code into an engine of the job's configuration (no compiling,
/// so no thread has started), confines the process with
/// [`wall::confine_current_process`] for the policy, sends the
/// [`WallReport`](crate::wall::WallReport), runs the guest with its output
/// captured, and sends the [`Outcome`]. Nothing is printed to stdout besides
/// the protocol; stderr is the parent's to show when the child fails.
///
/// # Errors
///
/// When the job cannot be read or run, or the wall cannot be put up as the
/// policy asks (`wall.mode = "require"` on a kernel missing a layer). The
/// error has been sent to the parent too, which returns it from
/// [`Worker::run`](super::Worker::run).
///
/// # Security
///
/// The code the job carries is native code, loaded without validation: only
/// a parent that compiled it itself may send it, over the pipe it holds.
/// Serve only on a stdin that such a parent gave you.
pub fn serve() -> Result<u8> {
    // Whatever the parent's parent passed down (a jobserver pipe, say) is
    // not the guest's to reach once the wall is up.
    #[cfg(target_os = "linux")]
    crate::wall::close_inherited_descriptors();
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout();
    let served = read_job(&mut input).and_then(|job| {
        drop(input);
        serve_job(job, &mut output)
    });
    if let Err(err) = &served {
        // The parent may be gone; the error still ends this process.
        let _ = protocol::write_json(&mut output, ERROR, &ErrorReply::from_error(err)).and_then(|()| output.flush());
    }
    served
}

/// A job as received: its header, code and stdin.
struct Received {
    header: JobHeader,
    code: Vec<u8>,
    stdin: Option<Vec<u8>>,
}

fn read_job(input: &mut impl Read) -> Result<Received> {
    let bad = |e: FrameError| anyhow!("the job on stdin {}; start a worker through `Worker::run` only", e.0);
    let (_, header) = protocol::read_frame(input, &[JOB], MESSAGE_CAP)
        .map_err(bad)?
        .ok_or_else(|| anyhow!("no job on stdin; start a worker through `Worker::run` only"))?;
    let header: JobHeader = protocol::parse(&header, "a job header").map_err(bad)?;
    let (_, code) = protocol::read_frame(input, &[CODE], CODE_CAP)
        .map_err(bad)?
        .ok_or_else(|| anyhow!("the job on stdin has no code"))?;
    let stdin = match header.stdin {
        true => Some(
            protocol::read_frame(input, &[STDIN], CODE_CAP)
                .map_err(bad)?
                .ok_or_else(|| anyhow!("the job on stdin has no guest stdin"))?
                .1,
        ),
        false => None,
    };
    Ok(Received { header, code, stdin })
}

fn serve_job(job: Received, output: &mut impl Write) -> Result<u8> {
    let header = job.header;
    let policy = header.policy.resolve()?;
    let engine = Engine::new(header.engine)?;
    let intent = match header.library {
        true => Intent::Library,
        false => Intent::Command,
    };
    // SAFETY: the code came over this process's stdin, a pipe only the
    // parent that started it holds, and `Worker::run` sends only code the
    // parent compiled itself (`CompiledProgram::new`).
    let program = unsafe {
        engine.load_precompiled_as(
            &header.name,
            header.size,
            (header.sha256, header.signers),
            &job.code,
            intent,
        )
    }?;
    drop(job.code);
    let mut builder = Sandbox::builder()
        .engine(engine)
        .policy(policy.clone())
        .capture_output(true)
        .record_uses(header.record_uses);
    if let Some(stdin) = job.stdin {
        builder = builder.stdin(stdin);
    }
    let sandbox = builder.build()?;
    // Everything the run needs from the host that the wall will not allow
    // is open by now, and no thread has started: the engine starts its
    // threads on the first run.
    let report = wall::confine_current_process(&WallPlan::for_policy(&policy))?;
    protocol::write_json(output, protocol::REPORT, &report)
        .and_then(|()| output.flush())
        .context("failed to send the wall report to the parent")?;
    let mut outcome = super::run_in_process(&sandbox, &program, &header.args, header.invoke.as_deref())?;
    outcome.wall = Some(report);
    send_outcome(output, outcome)
}

/// Sends the outcome as three frames: the outcome without its output, then
/// stdout and stderr as they are (JSON would quadruple them).
fn send_outcome(output: &mut impl Write, mut outcome: Outcome) -> Result<u8> {
    let stdout = std::mem::take(&mut outcome.stdout);
    let stderr = std::mem::take(&mut outcome.stderr);
    protocol::write_json(output, protocol::OUTCOME, &outcome)
        .and_then(|()| protocol::write_frame(output, protocol::STDOUT, &stdout))
        .and_then(|()| protocol::write_frame(output, protocol::STDERR, &stderr))
        .and_then(|()| output.flush())
        .context("failed to send the outcome to the parent")?;
    Ok(outcome.exit_code())
}
