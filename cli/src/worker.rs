//! `wasmcell worker` (hidden): the child side of `wasmcell::worker::Worker`.

use anyhow::Result;
use clap::Parser;

/// Serve one job of the worker protocol on stdin and stdout.
///
/// Not for people: a `Worker` (the matrix's, or a library host's) starts
/// this, sends the job and its compiled code over stdin, and reads the wall
/// report and the outcome from stdout.
#[derive(Parser, Debug)]
pub struct WorkerCommand {}

impl WorkerCommand {
    /// Serves the job and returns the outcome's exit code.
    ///
    /// # Errors
    ///
    /// As [`wasmcell::worker::serve`]; the error has been sent to the parent too.
    pub fn execute(self) -> Result<u8> {
        wasmcell::worker::serve()
    }
}
