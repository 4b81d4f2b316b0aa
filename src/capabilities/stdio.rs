//! The guest's stdin, stdout and stderr: where the policy sends them, with
//! every output byte charged to the run's output budget.
//!
//! A stream whose reader has gone (a closed pipe) is closed for good, and
//! each preview is told so in its own words, as wasmtime-wasi tells it:
//! `closed` through `wasi:io/streams`, `EPIPE` through preview 1's
//! `fd_write`. The write that found it closed was charged like any other
//! (the guest produced those bytes, as it does for `null`); later writes
//! fail at once and charge nothing.

use super::{Captured, Preview, RunIo};
use crate::limiter::{LimitExceeded, OutputBudget, Stream};
use crate::policy::{Input, Output, Policy};
use anyhow::Result;
use bytes::Bytes;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

pub(super) fn add_stdio(
    builder: &mut WasiCtxBuilder,
    policy: &Policy,
    preview: Preview,
    io: &RunIo,
    budget: &Arc<OutputBudget>,
    captured: &Captured,
) -> Result<()> {
    match (&io.stdin, policy.stdin()) {
        (Some(bytes), _) => {
            builder.stdin(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(bytes.clone()));
        }
        (None, Input::Null) => {}
        (None, Input::Inherit) => {
            builder.inherit_stdin();
        }
        (None, Input::File(path)) => {
            let bytes = crate::hostfs::read_file(path, "stdin file")?;
            builder.stdin(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(bytes));
        }
    }
    let stdout = open_sink(policy.stdout(), Stream::Stdout, io.capture, &captured.stdout)?;
    let stderr = open_sink(policy.stderr(), Stream::Stderr, io.capture, &captured.stderr)?;
    builder.stdout(BudgetedOutput::new(stdout, Stream::Stdout, preview, budget));
    builder.stderr(BudgetedOutput::new(stderr, Stream::Stderr, preview, budget));
    Ok(())
}

fn open_sink(spec: &Output, stream: Stream, capture: bool, buffer: &Arc<Mutex<Vec<u8>>>) -> Result<Sink> {
    Ok(match spec {
        Output::Null => Sink::Null,
        Output::Inherit if capture => Sink::Buffer(buffer.clone()),
        Output::Inherit => Sink::Host(stream),
        Output::File(path) => {
            let what = match stream {
                Stream::Stdout => "stdout file",
                Stream::Stderr => "stderr file",
            };
            let file = crate::hostfs::create_file(path, what)?;
            Sink::File(Arc::new(Mutex::new(file)))
        }
    })
}

/// Where a guest output stream's bytes end up.
#[derive(Clone)]
enum Sink {
    Null,
    Host(Stream),
    File(Arc<Mutex<std::fs::File>>),
    Buffer(Arc<Mutex<Vec<u8>>>),
}

impl Sink {
    fn write_all(&self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Null => Ok(()),
            Sink::Host(Stream::Stdout) => std::io::stdout().write_all(bytes),
            Sink::Host(Stream::Stderr) => std::io::stderr().write_all(bytes),
            Sink::File(f) => f.lock().unwrap_or_else(|e| e.into_inner()).write_all(bytes),
            Sink::Buffer(b) => {
                b.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn flush(&self) -> std::io::Result<()> {
        match self {
            Sink::Host(Stream::Stdout) => std::io::stdout().flush(),
            Sink::Host(Stream::Stderr) => std::io::stderr().flush(),
            Sink::File(f) => f.lock().unwrap_or_else(|e| e.into_inner()).flush(),
            Sink::Null | Sink::Buffer(_) => Ok(()),
        }
    }
}

/// A guest stdout or stderr that charges every byte to the run's
/// [`OutputBudget`] and stops the guest at the byte that overflows it.
#[derive(Clone)]
struct BudgetedOutput {
    sink: Sink,
    stream: Stream,
    preview: Preview,
    budget: Arc<OutputBudget>,
    /// Set once the reader has gone, to the OS error that said so; shared by
    /// every handle the guest opens on this stream.
    closed: Arc<OnceLock<Option<i32>>>,
}

impl BudgetedOutput {
    fn new(sink: Sink, stream: Stream, preview: Preview, budget: &Arc<OutputBudget>) -> BudgetedOutput {
        BudgetedOutput {
            sink,
            stream,
            preview,
            budget: budget.clone(),
            closed: Arc::default(),
        }
    }

    /// Writes what the budget allows; `Err(Limit)` when it fell short, which
    /// stops the guest whatever the sink said.
    fn write_budgeted(&self, bytes: &[u8]) -> Result<(), WriteError> {
        if let Some(os_error) = self.closed.get() {
            return Err(WriteError::Closed(*os_error));
        }
        let granted = self.budget.reserve(self.stream, bytes.len());
        let written = self.sink.write_all(&bytes[..granted]);
        if granted < bytes.len() {
            return Err(WriteError::Limit(LimitExceeded::Output {
                limit: self.budget.limit(),
            }));
        }
        written.map_err(|e| self.failed(e))
    }

    fn flush_sink(&self) -> Result<(), WriteError> {
        if let Some(os_error) = self.closed.get() {
            return Err(WriteError::Closed(*os_error));
        }
        self.sink.flush().map_err(|e| self.failed(e))
    }

    /// An error from the sink; a broken pipe closes the stream for good.
    fn failed(&self, e: std::io::Error) -> WriteError {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return WriteError::Io(e);
        }
        let os_error = *self.closed.get_or_init(|| e.raw_os_error());
        WriteError::Closed(os_error)
    }

    /// `e` as the guest's preview says it.
    fn stream_error(&self, e: WriteError) -> StreamError {
        match (e, self.preview) {
            (WriteError::Closed(_), Preview::P2) => StreamError::Closed,
            // Preview 1 turns `Closed` into `EIO`; the OS error itself
            // becomes `EPIPE` (as wasmtime-wasi maps host errors).
            (WriteError::Closed(os_error), Preview::P1) => {
                StreamError::LastOperationFailed(wasmtime::Error::new(broken_pipe(os_error)))
            }
            (WriteError::Io(e), _) => StreamError::LastOperationFailed(wasmtime::Error::new(e)),
            // A trap ends the guest now, carrying the typed cause.
            (WriteError::Limit(limit), _) => StreamError::Trap(wasmtime::Error::new(limit)),
        }
    }
}

/// The error a write to a closed stream gives: the OS error the stream
/// closed with, when there was one.
fn broken_pipe(os_error: Option<i32>) -> std::io::Error {
    match os_error {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::ErrorKind::BrokenPipe.into(),
    }
}

enum WriteError {
    Io(std::io::Error),
    /// The reader has gone, with the OS error that said so.
    Closed(Option<i32>),
    Limit(LimitExceeded),
}

impl IsTerminal for BudgetedOutput {
    fn is_terminal(&self) -> bool {
        match self.sink {
            Sink::Host(Stream::Stdout) => std::io::IsTerminal::is_terminal(&std::io::stdout()),
            Sink::Host(Stream::Stderr) => std::io::IsTerminal::is_terminal(&std::io::stderr()),
            _ => false,
        }
    }
}

impl StdoutStream for BudgetedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for BudgetedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_budgeted(&bytes).map_err(|e| self.stream_error(e))
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.flush_sink().map_err(|e| self.stream_error(e))
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if let Some(os_error) = self.closed.get() {
            return Err(self.stream_error(WriteError::Closed(*os_error)));
        }
        // Never advertise more than is left, plus one byte so that a guest
        // which keeps writing reaches the overflow and is stopped instead of
        // spinning on a zero-sized permit.
        let left = self
            .budget
            .limit()
            .saturating_sub(self.budget.stdout_bytes() + self.budget.stderr_bytes());
        Ok(usize::try_from(left.saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(1 << 20))
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BudgetedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for BudgetedOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.write_budgeted(buf).map(|()| buf.len()).map_err(into_io))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.flush_sink().map_err(into_io))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn into_io(e: WriteError) -> std::io::Error {
    match e {
        WriteError::Io(e) => e,
        WriteError::Closed(os_error) => broken_pipe(os_error),
        WriteError::Limit(limit) => std::io::Error::other(limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgeted_output_writes_up_to_the_limit_then_traps() {
        let budget = Arc::new(OutputBudget::new(5));
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let mut out = BudgetedOutput::new(Sink::Buffer(buffer.clone()), Stream::Stdout, Preview::P2, &budget);
        OutputStream::write(&mut out, Bytes::from_static(b"abc")).unwrap();
        match OutputStream::write(&mut out, Bytes::from_static(b"defg")) {
            Err(StreamError::Trap(e)) => assert!(e.downcast_ref::<LimitExceeded>().is_some()),
            other => panic!("expected a trap, got {:?}", other.map_err(|e| e.to_string())),
        }
        assert_eq!(&*buffer.lock().unwrap(), b"abcde");
    }
}
