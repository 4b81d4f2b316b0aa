//! Needs STREAM (args[1]: `stdout` or `stderr`) to be a pipe whose reader has gone. Writes
//! `hello\n` to STREAM twice and reports on the other stream how each write ended, one line
//! each: `std: ok` or `std: <io::ErrorKind>` for a write through Rust's std (wasi-libc); in the
//! wasm32-wasip2 build the first write goes straight through `wasi:io/streams` instead and
//! reports `wasi: ok`, `wasi: closed` or `wasi: last-operation-failed`. Exits 0.

use std::io::Write;

fn main() {
    let stream = std::env::args().nth(1).expect("usage: stdio_epipe stdout|stderr");
    let to_stdout = match stream.as_str() {
        "stdout" => true,
        "stderr" => false,
        other => panic!("STREAM is `stdout` or `stderr`, not `{other}`"),
    };
    let first = first_write(to_stdout);
    let second = std_write(to_stdout);
    // The report goes where the reader is still listening.
    let report = format!("{first}\n{second}\n");
    let written = if to_stdout {
        std::io::stderr().write_all(report.as_bytes())
    } else {
        std::io::stdout().write_all(report.as_bytes())
    };
    written.expect("the other stream is open");
}

/// One write through Rust's std, which calls wasi-libc's `write`.
fn std_write(to_stdout: bool) -> String {
    let result = if to_stdout {
        std::io::stdout()
            .write_all(b"hello\n")
            .and_then(|()| std::io::stdout().flush())
    } else {
        std::io::stderr().write_all(b"hello\n")
    };
    match result {
        Ok(()) => "std: ok".to_string(),
        Err(err) => format!("std: {:?}", err.kind()),
    }
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn first_write(to_stdout: bool) -> String {
    use wasi::io::streams::StreamError;
    let stream = if to_stdout {
        wasi::cli::stdout::get_stdout()
    } else {
        wasi::cli::stderr::get_stderr()
    };
    match stream.blocking_write_and_flush(b"hello\n") {
        Ok(()) => "wasi: ok".to_string(),
        Err(StreamError::Closed) => "wasi: closed".to_string(),
        Err(StreamError::LastOperationFailed(_)) => "wasi: last-operation-failed".to_string(),
    }
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn first_write(to_stdout: bool) -> String {
    std_write(to_stdout)
}
