//! Standard streams: stdin from the embedder, a file or nothing; stdout and stderr captured,
//! written to a file or discarded, and counted byte for byte in every case.

use crate::{
    assert_status, assert_test_exists, both, closed_pipe, policy_toml, run, run_with_stdin, stdout, wait_for,
    wasmcell_command,
};
use wasmcell::{Policy, Status};
use wasmcell_artifacts::{
    FS_READ, FS_READ_COMPONENT, STDIO_ECHO, STDIO_ECHO_COMPONENT, STDIO_EPIPE, STDIO_EPIPE_COMPONENT,
    STDIO_STDIN_BLOCKED, STDIO_STDIN_BLOCKED_COMPONENT,
};

wasmcell_artifacts::foreach_stdio!(assert_test_exists);

/// Bytes that are not valid UTF-8, with NULs and line endings mixed in.
fn binary_payload() -> Vec<u8> {
    let mut bytes = vec![0xff, 0xfe, 0x00, b'\n', 0xc3, 0x28, b'\r', b'\n', 0x80, 0x00, 0x00];
    bytes.extend(0..=255u8);
    bytes.extend(b"tail without newline");
    bytes
}

/// 1 MiB that is not a repetition of a short period, so a dropped or repeated chunk shows.
fn mib_payload() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn stdio_echo() {
    for guest in both(STDIO_ECHO, STDIO_ECHO_COMPONENT) {
        for payload in [b"hello\n".to_vec(), binary_payload(), mib_payload()] {
            let outcome = run_with_stdin(Policy::deny_all(), guest, &[] as &[&str], &payload);
            assert_status(&outcome, Status::Exited(0));
            assert!(
                outcome.stdout == payload,
                "{guest}: echoed {} bytes differ from the {} given",
                outcome.stdout.len(),
                payload.len()
            );
            assert_eq!(outcome.stdout_bytes, payload.len() as u64, "{guest}");
            assert_eq!(outcome.stderr_bytes, 0, "{guest}");
            assert!(outcome.stderr.is_empty(), "{guest}");
        }
    }
}

/// `stdin = { file = ... }` feeds the file's bytes, resolved relative to the policy's folder.
#[test]
fn stdio_stdin_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let payload = binary_payload();
    std::fs::write(dir.path().join("in.txt"), &payload).unwrap();
    let policy = policy_toml("[stdio]\nstdin = { file = \"in.txt\" }\n", dir.path());
    for guest in both(STDIO_ECHO, STDIO_ECHO_COMPONENT) {
        let outcome = run(policy.clone(), guest, &[] as &[&str]);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(outcome.stdout, payload, "{guest}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("in.txt")).unwrap(),
        payload,
        "the input file is left alone"
    );
}

/// Bytes given to the builder replace the policy's stdin.
#[test]
fn stdio_builder_stdin_replaces_policy_stdin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "from the file").unwrap();
    let policy = policy_toml("[stdio]\nstdin = { file = \"in.txt\" }\n", dir.path());
    for guest in both(STDIO_ECHO, STDIO_ECHO_COMPONENT) {
        let outcome = run_with_stdin(policy.clone(), guest, &[] as &[&str], b"from the builder");
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(stdout(&outcome), "from the builder", "{guest}");
    }
}

/// Stdin is closed by default (and with `stdin = "null"`): the first read is end-of-file.
#[test]
fn stdio_stdin_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let explicit_null = policy_toml("[stdio]\nstdin = \"null\"\n", dir.path());
    for guest in both(STDIO_STDIN_BLOCKED, STDIO_STDIN_BLOCKED_COMPONENT) {
        for policy in [Policy::deny_all(), explicit_null.clone()] {
            let outcome = run(policy, guest, &[] as &[&str]);
            assert_status(&outcome, Status::Exited(0));
            assert_eq!(stdout(&outcome), "eof after 0 bytes\n", "{guest}");
        }
        let outcome = run_with_stdin(Policy::deny_all(), guest, &[] as &[&str], &mib_payload());
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(stdout(&outcome), format!("eof after {} bytes\n", 1 << 20), "{guest}");
    }
    // `stdin = "inherit"` would read this test process's own stdin, which under `cargo test`
    // may be a terminal or closed; the CLI tests cover a stdin held open.
}

/// `stdout = { file = ... }` writes the host file and captures nothing; the bytes still count.
#[test]
fn stdio_stdout_to_file() {
    let dir = tempfile::tempdir().unwrap();
    let payload = binary_payload();
    let policy = policy_toml("[stdio]\nstdout = { file = \"out.log\" }\n", dir.path());
    for guest in both(STDIO_ECHO, STDIO_ECHO_COMPONENT) {
        // A leftover from the previous run must be truncated, not appended to.
        std::fs::write(dir.path().join("out.log"), "stale content that is longer than nothing").unwrap();
        let outcome = run_with_stdin(policy.clone(), guest, &[] as &[&str], &payload);
        assert_status(&outcome, Status::Exited(0));
        assert!(
            outcome.stdout.is_empty(),
            "{guest}: stdout went to the file, not the capture"
        );
        assert_eq!(outcome.stdout_bytes, payload.len() as u64, "{guest}");
        assert_eq!(std::fs::read(dir.path().join("out.log")).unwrap(), payload, "{guest}");
    }
}

/// `stdout = "null"` discards the bytes but still counts them (they count against the limit).
#[test]
fn stdio_stdout_null_discards_but_counts() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_toml("[stdio]\nstdout = \"null\"\n", dir.path());
    let payload = mib_payload();
    for guest in both(STDIO_ECHO, STDIO_ECHO_COMPONENT) {
        let outcome = run_with_stdin(policy.clone(), guest, &[] as &[&str], &payload);
        assert_status(&outcome, Status::Exited(0));
        assert!(outcome.stdout.is_empty(), "{guest}");
        assert_eq!(outcome.stdout_bytes, payload.len() as u64, "{guest}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "discarding creates no file"
    );
}

/// The byte counters equal what the guest really wrote to each stream.
#[test]
fn stdio_byte_counts_are_exact() {
    for guest in both(FS_READ, FS_READ_COMPONENT) {
        // No grants: fs_read prints `error: <kind>` to stderr and nothing to stdout.
        let outcome = run(Policy::deny_all(), guest, &["/data/missing.txt"]);
        assert_status(&outcome, Status::Exited(1));
        assert!(outcome.stdout.is_empty(), "{guest}");
        assert_eq!(outcome.stdout_bytes, 0, "{guest}");
        assert!(!outcome.stderr.is_empty(), "{guest}");
        assert_eq!(outcome.stderr_bytes, outcome.stderr.len() as u64, "{guest}");
    }
    for guest in both(STDIO_ECHO, STDIO_ECHO_COMPONENT) {
        let outcome = run_with_stdin(Policy::deny_all(), guest, &[] as &[&str], b"");
        assert_status(&outcome, Status::Exited(0));
        assert_eq!((outcome.stdout_bytes, outcome.stderr_bytes), (0, 0), "{guest}");
    }
}

/// `stderr = { file = ... }` gets the guest's stderr; stdout is still captured separately.
#[test]
fn stdio_stderr_to_file() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_toml("[stdio]\nstderr = { file = \"err.log\" }\n", dir.path());
    for guest in both(FS_READ, FS_READ_COMPONENT) {
        let outcome = run(policy.clone(), guest, &["/nowhere.txt"]);
        assert_status(&outcome, Status::Exited(1));
        assert!(outcome.stderr.is_empty(), "{guest}: stderr went to the file");
        let written = std::fs::read(dir.path().join("err.log")).unwrap();
        let text = String::from_utf8_lossy(&written);
        assert!(text.starts_with("error: "), "{guest}: err.log holds {text:?}");
        assert_eq!(outcome.stderr_bytes, written.len() as u64, "{guest}");
    }
}

/// A write to a stdout or stderr whose reader has gone fails as wasmtime-wasi says it to each
/// preview: `closed` through `wasi:io/streams` (wasmtime's `p2_cli_stdout_epipe`), `EPIPE` through
/// preview 1, which Rust reports as `BrokenPipe`; wasmcell itself is not killed by `SIGPIPE`. The
/// stream stays closed: the write that found it so is counted like any other, the next fails at
/// once and counts nothing. Before the fix a component was told `last-operation-failed`, and
/// every failed write was counted.
#[test]
fn stdio_epipe() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    for (guest, first) in [
        (STDIO_EPIPE, "std: BrokenPipe"),
        (STDIO_EPIPE_COMPONENT, "wasi: closed"),
    ] {
        for stream in ["stdout", "stderr"] {
            let mut cmd = wasmcell_command();
            cmd.args(["run", "--report", report.to_str().unwrap(), guest, stream]);
            let out = if stream == "stdout" {
                wait_for(cmd.stdout(closed_pipe()).spawn().unwrap())
            } else {
                wait_for(cmd.stderr(closed_pipe()).spawn().unwrap())
            };
            let (said, other) = if stream == "stdout" {
                (&out.stderr, "stderr")
            } else {
                (&out.stdout, "stdout")
            };
            let said = String::from_utf8_lossy(said);
            assert_eq!(out.status.code(), Some(0), "{guest} {stream}: {said}");
            assert_eq!(said, format!("{first}\nstd: BrokenPipe\n"), "{guest} {stream}");
            let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
            assert_eq!(
                json[format!("{stream}_bytes")],
                "hello\n".len(),
                "{guest} {stream}: {json}"
            );
            assert_eq!(json[format!("{other}_bytes")], said.len(), "{guest} {stream}: {json}");
        }
    }
}
