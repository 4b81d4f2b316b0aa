//! How a run ended, and the one table that maps endings to exit codes.
//!
//! A guest's behaviour is data, not an error: exiting, trapping, timing out,
//! running out of fuel and hitting the memory or output cap all produce an
//! [`Outcome`]. Classification looks at types (`I32Exit`, `Trap`, and the
//! sandbox's own [`LimitExceeded`]), never at message text.

use crate::cancel::Cancelled;
use crate::capabilities::Denial;
use crate::engine::LoadError;
use crate::limiter::LimitExceeded;
use crate::policy::{ByteSize, Policy, PolicyError};
use crate::term::sanitize;
use crate::wall::{WallError, WallReport};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;
use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

/// Exit code for a usage error or an invalid policy: nothing ran.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a guest stopped by the wall-clock timeout.
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit code for a failure of the sandbox itself (a host error).
pub const EXIT_SANDBOX: u8 = 125;
/// Exit code for a module that could not be loaded or linked.
pub const EXIT_LOAD: u8 = 126;
/// Exit code for a run the host cancelled (the CLI on SIGINT or SIGTERM).
pub const EXIT_CANCELLED: u8 = 130;
/// Exit code for a guest that trapped.
pub const EXIT_TRAP: u8 = 134;
/// Exit code for a guest stopped at the memory limit.
pub const EXIT_MEMORY: u8 = 137;
/// Exit code for a guest that ran out of fuel.
pub const EXIT_FUEL: u8 = 152;
/// Exit code for a guest stopped at the output limit.
pub const EXIT_OUTPUT: u8 = 153;
/// Exit code for a run the second wall stopped: its process made a system
/// call only a subverted runtime makes, and the kernel killed it with
/// `SIGSYS` (128 + 31, as a shell reports that signal).
pub const EXIT_WALL: u8 = 159;
/// Exit code standing in for a guest exit status outside `0..=125`, which
/// would otherwise be mistaken for one of the sandbox's own codes.
pub const EXIT_OUT_OF_RANGE: u8 = 1;

/// The exit-code table, as printed by `wasmcell run --help` and the README.
pub const EXIT_CODE_TABLE: &str = "\
code     meaning
0..=125  the guest exited with this status (proc_exit or return from main)
1        also: the guest exited with a status outside 0..=125 (the message and report give it)
2        usage error or invalid policy; nothing ran
124      wall-clock timeout (limits.timeout)
125      the sandbox itself failed (a host error, not the guest's fault)
126      the module could not be loaded or linked (not Wasm, too large, unknown imports, not a command)
130      the run was cancelled (Ctrl-C or SIGTERM for the CLI, a CancelHandle for the library)
134      the guest trapped (unreachable, out of bounds, division by zero, stack overflow)
137      memory limit reached (limits.memory); the guest is stopped, like an out-of-memory kill
152      fuel exhausted (limits.fuel), like RLIMIT_CPU's SIGXCPU
153      output limit reached (limits.output), like RLIMIT_FSIZE's SIGXFSZ
159      the second wall stopped the run: its process made a forbidden system call and was killed (SIGSYS)";

/// The exit code for an error that stopped a run before or instead of the
/// guest, from the [`EXIT_CODE_TABLE`]: [`EXIT_USAGE`] when what was asked
/// cannot be run ([`PolicyError`], [`RequestError`], and the [`WallError`]
/// of a wall `wall.mode = "require"` could not put up), [`EXIT_LOAD`] for a
/// [`LoadError`], [`EXIT_SANDBOX`] for anything else (a host failure). The
/// whole chain is searched, so context added on the way keeps the code.
///
/// The command line, the matrix and the containerd shim all end with it.
pub fn exit_code_for_error(err: &anyhow::Error) -> u8 {
    let usage =
        |e: &(dyn std::error::Error + 'static)| e.is::<PolicyError>() || e.is::<RequestError>() || e.is::<WallError>();
    if err.chain().any(usage) {
        EXIT_USAGE
    } else if err.chain().any(|e| e.is::<LoadError>()) {
        EXIT_LOAD
    } else {
        EXIT_SANDBOX
    }
}

/// A request refused before anything ran, for what it asked rather than for
/// the guest or the host: calling an export that is not there, a matrix
/// without modules, a container configuration the shim will not run. Its
/// [`kind`](RequestError::kind) says which; [`exit_code_for_error`] gives
/// [`EXIT_USAGE`] for it.
///
/// # Example
///
/// ```
/// use wasmcell::{Policy, RequestError, RequestErrorKind, Sandbox, Status};
///
/// let sandbox = Sandbox::builder().policy(Policy::deny_all()).build()?;
/// let program = sandbox.load_library_bytes("trap.wasm", br#"(module
///     (func (export "boom") unreachable) (func (export "ok")))"#)?;
/// let mut instance = sandbox.instantiate(&program)?;
/// let refused = |err: &anyhow::Error| {
///     err.downcast_ref::<RequestError>().map(RequestError::kind) == Some(RequestErrorKind::Invocation)
/// };
/// assert!(refused(&instance.invoke("nope", &[] as &[&str]).unwrap_err()));
/// assert_eq!(instance.invoke("boom", &[] as &[&str])?.outcome.status, Status::Trap);
/// let err = instance.invoke("ok", &[] as &[&str]).unwrap_err();
/// assert!(refused(&err));
/// assert!(err.to_string().contains("an earlier call of `boom` did not return"));
/// assert_eq!(wasmcell::exit_code_for_error(&err), wasmcell::EXIT_USAGE);
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug)]
pub struct RequestError {
    kind: RequestErrorKind,
    message: String,
}

/// What kind of request a [`RequestError`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestErrorKind {
    /// A call of an [`Instance`](crate::Instance): no such export, arguments
    /// that do not fit it, or an instance poisoned by an earlier call.
    Invocation,
    /// The matrix's input: unreadable or invalid expectations, no modules
    /// or policies, duplicate names.
    MatrixInput,
    /// A container the containerd shim will not run as configured (its
    /// policy grants the runtime's own directories, its image's policy is
    /// not a regular file, its precompiled code does not fit the policy).
    Container,
}

impl RequestError {
    /// A refusal of `kind`; `message` says what was wrong and what to do.
    pub fn new(kind: RequestErrorKind, message: impl Into<String>) -> RequestError {
        RequestError {
            kind,
            message: message.into(),
        }
    }

    /// What kind of request was refused.
    pub fn kind(&self) -> RequestErrorKind {
        self.kind
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RequestError {}

/// How the guest ended. New endings may be added: match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Status {
    /// The guest exited on its own with this status.
    Exited(i32),
    /// The guest trapped; [`Outcome::trap`] has the message.
    Trap,
    /// The wall-clock limit passed.
    Timeout,
    /// The guest burned all its fuel.
    FuelExhausted,
    /// The guest tried to grow memory past the limit (or declared more than it
    /// at instantiation).
    MemoryLimit,
    /// The guest wrote more than the output limit.
    OutputLimit,
    /// The host cancelled the run through a
    /// [`CancelHandle`](crate::CancelHandle).
    Cancelled,
    /// The second wall stopped the run: its process made a system call only
    /// a subverted runtime makes, and the kernel killed it. Reported by the
    /// parent that watched the process (the CLI's, or a worker's host).
    WallStopped,
}

impl Status {
    /// The report's name for this status: `exited`, `trap`, `timeout`,
    /// `fuel-exhausted`, `memory-limit`, `output-limit`, `cancelled` or
    /// `wall-stopped`.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Exited(_) => "exited",
            Status::Trap => "trap",
            Status::Timeout => "timeout",
            Status::FuelExhausted => "fuel-exhausted",
            Status::MemoryLimit => "memory-limit",
            Status::OutputLimit => "output-limit",
            Status::Cancelled => "cancelled",
            Status::WallStopped => "wall-stopped",
        }
    }
}

/// Everything known about how one run ended.
///
/// # Example
///
/// ```
/// use wasmcell::{Policy, Sandbox, Status};
///
/// let policy = Policy::builder().fuel(1_000).build()?;
/// let sandbox = Sandbox::builder().policy(policy).build()?;
/// let spin = sandbox.load_bytes("spin.wasm", br#"(module (func (export "_start") (loop (br 0))))"#)?;
/// let outcome = sandbox.run_program(&spin, &[] as &[&str])?;
/// assert_eq!(outcome.status, Status::FuelExhausted);
/// assert_eq!(outcome.exit_code(), wasmcell::EXIT_FUEL);
/// assert_eq!(outcome.fuel_used, Some(1_000));
/// assert!(outcome.ending_line(sandbox.policy()).unwrap().contains("fuel exhausted"));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Outcome {
    /// How the guest ended.
    pub status: Status,
    /// The trap message when `status` is [`Status::Trap`].
    pub trap: Option<String>,
    /// Fuel burned, when fuel is metered.
    pub fuel_used: Option<u64>,
    /// Wall-clock time from the start of instantiation to the end.
    pub elapsed: Duration,
    /// The most of `limits.memory` the guest held at once: linear memory plus
    /// table storage (8 bytes per table element), the two things that limit
    /// counts.
    pub peak_memory_bytes: u64,
    /// Bytes the guest wrote to stdout (as delivered, after the output cap).
    pub stdout_bytes: u64,
    /// Bytes the guest wrote to stderr.
    pub stderr_bytes: u64,
    /// Captured stdout, when the run captured output; empty otherwise.
    pub stdout: Vec<u8>,
    /// Captured stderr, when the run captured output; empty otherwise.
    pub stderr: Vec<u8>,
    /// Capability uses the policy refused, in order: the first
    /// [`MAX_DENIALS`](crate::MAX_DENIALS) that fit in
    /// [`DENIAL_BYTES`](crate::DENIAL_BYTES).
    pub denials: Vec<Denial>,
    /// Refusals left out of `denials` because the record was full; they were
    /// refused all the same.
    pub denials_dropped: u64,
    /// Capability uses the policy decided, allowed and denied, counted per
    /// kind (`fs-read`, `tcp-connect`, ...; see [`CapabilityUse::kind`](crate::CapabilityUse::kind)).
    pub uses: std::collections::BTreeMap<String, crate::UseCounts>,
    /// Outgoing HTTP requests per origin (`scheme://host:port`, as wasmcell
    /// decided it): requests sent and refused, body bytes each way. At most
    /// [`MAX_HTTP_ORIGINS`](crate::MAX_HTTP_ORIGINS) origins, the rest under
    /// [`OTHER_ORIGINS`](crate::OTHER_ORIGINS).
    #[serde(default)]
    pub http: std::collections::BTreeMap<String, crate::HttpOriginCounts>,
    /// The second wall around the process the run happened in: each layer,
    /// in effect or not. `None` when the process was not confined by
    /// wasmcell (a library run in the host's own process; see
    /// [`confine_current_process`](crate::wall::confine_current_process)).
    pub wall: Option<WallReport>,
    /// The SHA-256 (lowercase hex) of the WebAssembly that ran, as
    /// [`Program::sha256`](crate::Program::sha256) gives it: what a pinned
    /// policy (`module.sha256`) checked, so a report proves which program
    /// ran. `None` for precompiled code, which records no digest, and for
    /// an outcome a watcher reports without the run's own.
    #[serde(default)]
    pub module_sha256: Option<String>,
    /// The digest of the policy the run was under ([`Policy::sha256`]): with
    /// `module_sha256`, which program ran under which rules. `None` for an
    /// outcome a watcher reports without the run's own.
    #[serde(default)]
    pub policy_sha256: Option<String>,
    /// The run's distinct capability uses, allowed and denied, when the
    /// sandbox keeps them ([`SandboxBuilder::record_uses`](crate::SandboxBuilder::record_uses));
    /// `None` otherwise. Untrusted text, as the guest chose it.
    #[serde(default)]
    pub uses_seen: Option<crate::UsesSeen>,
}

impl Outcome {
    /// The outcome of a run the second wall stopped, as its watcher (a
    /// parent process) reports it: nothing is known of the guest but that
    /// its process was killed, and the wall it ran behind, when the run said.
    pub fn wall_stopped(wall: Option<WallReport>) -> Outcome {
        Outcome::watched(Status::WallStopped, wall)
    }

    /// The outcome a watcher (a parent process) reports for a run whose own
    /// report it does not have: `status`, and the wall the run said it was
    /// behind; nothing else is known.
    pub fn watched(status: Status, wall: Option<WallReport>) -> Outcome {
        Outcome {
            status,
            trap: None,
            fuel_used: None,
            elapsed: Duration::ZERO,
            peak_memory_bytes: 0,
            stdout_bytes: 0,
            stderr_bytes: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            denials: Vec::new(),
            denials_dropped: 0,
            uses: Default::default(),
            http: Default::default(),
            wall,
            module_sha256: None,
            policy_sha256: None,
            uses_seen: None,
        }
    }

    /// The process exit code `wasmcell run` ends with for this outcome; see
    /// [`EXIT_CODE_TABLE`].
    pub fn exit_code(&self) -> u8 {
        match self.status {
            Status::Exited(code) => match u8::try_from(code) {
                Ok(code) if code <= 125 => code,
                _ => EXIT_OUT_OF_RANGE,
            },
            Status::Trap => EXIT_TRAP,
            Status::Timeout => EXIT_TIMEOUT,
            Status::FuelExhausted => EXIT_FUEL,
            Status::MemoryLimit => EXIT_MEMORY,
            Status::Cancelled => EXIT_CANCELLED,
            Status::WallStopped => EXIT_WALL,
            Status::OutputLimit => EXIT_OUTPUT,
        }
    }

    /// The guest's own exit status, when it exited.
    pub fn guest_exit_status(&self) -> Option<i32> {
        match self.status {
            Status::Exited(code) => Some(code),
            _ => None,
        }
    }

    /// One line explaining an ending the sandbox imposed (or an out-of-range
    /// exit status), naming the limit's policy key and where it was set
    /// (`limits.fuel in policies/tight.toml`); `None` for a plain exit. Guest-chosen text in it (a trap message) has its control
    /// characters escaped, so the line is safe to print.
    pub fn ending_line(&self, policy: &Policy) -> Option<String> {
        let l = policy.limits();
        Some(match self.status {
            Status::Exited(code) if self.exit_code() == EXIT_OUT_OF_RANGE && code != 1 => format!(
                "guest exited with status {code}, outside 0..=125 where it could be mistaken for a sandbox code; exiting with {EXIT_OUT_OF_RANGE}"
            ),
            Status::Exited(_) => return None,
            // A trap message may carry guest-chosen text (function names from
            // the module's name section, say), so it is escaped.
            Status::Trap => format!(
                "guest trapped: {}",
                sanitize(self.trap.as_deref().unwrap_or("unknown trap"))
            ),
            Status::Timeout => format!(
                "timed out after {} ({})",
                humantime::format_duration(l.timeout.value),
                l.timeout.origin.cite("limits.timeout")
            ),
            Status::FuelExhausted => format!(
                "fuel exhausted after {} units ({})",
                l.fuel.value.unwrap_or_default(),
                l.fuel.origin.cite("limits.fuel")
            ),
            Status::MemoryLimit => format!(
                "memory limit reached: the guest asked for more than {} of linear memory and tables ({})",
                ByteSize(l.memory.value),
                l.memory.origin.cite("limits.memory")
            ),
            Status::OutputLimit => format!(
                "output limit reached: the guest wrote more than {} to stdout and stderr ({})",
                ByteSize(l.output.value),
                l.output.origin.cite("limits.output")
            ),
            Status::Cancelled => "cancelled: the host stopped the run before the guest ended".to_string(),
            Status::WallStopped => "the second wall stopped the run: its process made a system call the wall forbids (seccomp killed it with SIGSYS); the guest or a bug it reached tried to leave the sandbox".to_string(),
        })
    }

    /// The JSON report: the CLI writes it for `--report`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = self.report_json();
        if let Some(seen) = &self.uses_seen {
            json["uses_seen"] = serde_json::to_value(seen).unwrap_or_default();
        }
        json
    }

    fn report_json(&self) -> serde_json::Value {
        serde_json::json!({
            "status": self.status.name(),
            "exit_code": self.exit_code(),
            "guest_exit_status": self.guest_exit_status(),
            "trap": self.trap,
            "fuel_used": self.fuel_used,
            "elapsed_ms": self.elapsed.as_secs_f64() * 1000.0,
            "peak_memory_bytes": self.peak_memory_bytes,
            "stdout_bytes": self.stdout_bytes,
            "stderr_bytes": self.stderr_bytes,
            "denials": self.denials,
            "denials_dropped": self.denials_dropped,
            "uses": self.uses,
            "http": self.http,
            "wall": self.wall.as_ref().map(WallReport::to_json),
            "module_sha256": self.module_sha256,
            "policy_sha256": self.policy_sha256,
        })
    }
}

/// What the runner knows when the guest stops, gathered for [`classify`].
pub(crate) struct Ending<'a> {
    /// The result of instantiating and running; `None` when the timer won.
    pub result: Option<&'a wasmtime::Result<i32>>,
    /// A memory refusal the limiter recorded.
    pub memory_refused: bool,
    /// Whether the output budget overflowed.
    pub output_exceeded: bool,
}

/// Decides the [`Status`] (and trap message) of a finished run.
///
/// Recorded limit hits come first: a guest stopped by the memory or output
/// cap may surface as any error, but the limiter and budget know the cause.
pub(crate) fn classify(ending: Ending<'_>) -> (Status, Option<String>) {
    let Some(result) = ending.result else {
        return (Status::Timeout, None);
    };
    // A refusal the guest carried on past is not how it ended: when the GC
    // heap may not grow, wasmtime collects instead and the guest goes on to
    // return or exit. Any other ending after a refusal is the limit's doing.
    let carried_on = match result {
        Ok(_) => true,
        Err(err) => err.is::<I32Exit>(),
    };
    if ending.memory_refused && !carried_on {
        return (Status::MemoryLimit, None);
    }
    if ending.output_exceeded {
        return (Status::OutputLimit, None);
    }
    let err = match result {
        Ok(code) => return (Status::Exited(*code), None),
        Err(err) => err,
    };
    if err.is::<Cancelled>() {
        return (Status::Cancelled, None);
    }
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return (Status::Exited(exit.0), None);
    }
    if let Some(limit) = err.downcast_ref::<LimitExceeded>() {
        return match limit {
            LimitExceeded::Memory { .. } => (Status::MemoryLimit, None),
            LimitExceeded::Output { .. } => (Status::OutputLimit, None),
            LimitExceeded::Timeout => (Status::Timeout, None),
        };
    }
    if let Some(wasmtime::component::ResourceTableError::Full) = err.downcast_ref() {
        let msg = "handle limit reached: the guest tried to hold more open files, directories and streams than limits.handles allows";
        return (Status::Trap, Some(msg.to_string()));
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => (Status::FuelExhausted, None),
        Some(Trap::Interrupt) => (Status::Timeout, None),
        Some(trap) => (Status::Trap, Some(trap.to_string())),
        // Any other error that ends a guest call was raised by a host
        // function on the guest's behalf (a bad handle, an invalid argument):
        // the guest is at fault, so it is reported as a trap.
        None => (Status::Trap, Some(format!("{err:#}"))),
    }
}

/// Whether an error that ended a run is the host's failure rather than the
/// guest's doing: the operating system refused memory or another resource
/// (an `mmap` that failed, say), which no guest behaviour within its limits
/// explains. Such runs are reported as sandbox errors, not as traps.
pub(crate) fn is_host_failure(err: &wasmtime::Error) -> bool {
    if err.is::<Trap>() {
        return false;
    }
    err.chain().any(|e| {
        #[cfg(unix)]
        if e.is::<rustix::io::Errno>() {
            return true;
        }
        e.is::<std::io::Error>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: Status) -> Outcome {
        Outcome::watched(status, None)
    }

    #[test]
    fn exit_codes_follow_the_table() {
        let cases = [
            (Status::Exited(0), 0),
            (Status::Exited(125), 125),
            (Status::Exited(126), EXIT_OUT_OF_RANGE),
            (Status::Exited(255), EXIT_OUT_OF_RANGE),
            (Status::Exited(-1), EXIT_OUT_OF_RANGE),
            (Status::Trap, 134),
            (Status::Timeout, 124),
            (Status::FuelExhausted, 152),
            (Status::MemoryLimit, 137),
            (Status::OutputLimit, 153),
            (Status::Cancelled, 130),
        ];
        for (status, code) in cases {
            assert_eq!(outcome(status).exit_code(), code, "{status:?}");
            if !matches!(status, Status::Exited(_)) {
                let row = format!("{code} ");
                assert!(
                    EXIT_CODE_TABLE.lines().any(|l| l.starts_with(&row)),
                    "{code} missing from the table"
                );
            }
        }
    }

    #[test]
    fn readme_and_help_share_the_table() {
        let readme = include_str!("../README.md");
        for code in [
            EXIT_OUT_OF_RANGE,
            EXIT_USAGE,
            EXIT_TIMEOUT,
            EXIT_SANDBOX,
            EXIT_LOAD,
            EXIT_CANCELLED,
            EXIT_TRAP,
            EXIT_MEMORY,
            EXIT_FUEL,
            EXIT_OUTPUT,
        ] {
            let row = format!("| {code} |");
            assert!(readme.contains(&row), "README's exit-code table lacks {code}");
            assert!(
                EXIT_CODE_TABLE.lines().any(|l| l.starts_with(&format!("{code} "))),
                "{code}"
            );
        }
        assert!(readme.contains("| 0..=125 |") && EXIT_CODE_TABLE.contains("0..=125"));
    }

    #[test]
    fn classify_by_type() {
        let exit: wasmtime::Result<i32> = Err(wasmtime::Error::new(I32Exit(7)));
        let fuel: wasmtime::Result<i32> = Err(wasmtime::Error::new(Trap::OutOfFuel));
        let oob: wasmtime::Result<i32> = Err(wasmtime::Error::new(Trap::MemoryOutOfBounds));
        let output: wasmtime::Result<i32> = Err(wasmtime::Error::new(LimitExceeded::Output { limit: 1 }));
        let end = |r| Ending {
            result: Some(r),
            memory_refused: false,
            output_exceeded: false,
        };
        assert_eq!(classify(end(&exit)).0, Status::Exited(7));
        assert_eq!(classify(end(&fuel)).0, Status::FuelExhausted);
        assert_eq!(classify(end(&oob)).0, Status::Trap);
        assert!(classify(end(&oob)).1.unwrap().contains("out of bounds"));
        assert_eq!(classify(end(&output)).0, Status::OutputLimit);
        let refused = Ending {
            result: Some(&oob),
            memory_refused: true,
            output_exceeded: false,
        };
        assert_eq!(
            classify(refused).0,
            Status::MemoryLimit,
            "a recorded refusal beats the trap it caused"
        );
        // See: #13
        for survived in [&Ok(0), &exit] {
            let carried_on = Ending {
                result: Some(survived),
                memory_refused: true,
                output_exceeded: false,
            };
            assert_ne!(
                classify(carried_on).0,
                Status::MemoryLimit,
                "a guest that returned or exited after a refusal was not stopped by it"
            );
        }
        let timer = Ending {
            result: None,
            memory_refused: false,
            output_exceeded: false,
        };
        assert_eq!(classify(timer).0, Status::Timeout);
    }

    /// A trap message can carry the module's own names: the ending line
    /// escapes them.
    // See: #9
    #[test]
    fn describe_escapes_guest_text_in_traps() {
        let mut trapped = outcome(Status::Trap);
        trapped.trap = Some("in `f\u{1b}[2J`\nwasmcell: forged\u{202e}".to_string());
        let line = trapped.ending_line(&Policy::deny_all()).unwrap();
        assert_eq!(line, r"guest trapped: in `f\u{1b}[2J`\nwasmcell: forged\u{202e}");
    }

    /// The library explains an ending with the policy key; which flag sets
    /// it is the CLI's to say.
    #[test]
    fn describe_names_the_policy_key_not_a_flag() {
        let cases = [
            (Status::Timeout, "limits.timeout"),
            (Status::FuelExhausted, "limits.fuel"),
            (Status::MemoryLimit, "limits.memory"),
            (Status::OutputLimit, "limits.output"),
        ];
        for (status, key) in cases {
            let line = outcome(status).ending_line(&Policy::deny_all()).unwrap();
            assert!(line.contains(&format!("default {key}")), "{line}");
            assert!(!line.contains("--"), "a flag in a library message: {line}");
        }
    }

    #[test]
    fn report_names_the_status_and_exit_code() {
        // The full key set is checked end to end in tests/all/cli.rs.
        let json = outcome(Status::FuelExhausted).to_json();
        assert_eq!(json["status"], "fuel-exhausted");
        assert_eq!(json["exit_code"], 152);
        assert!(json["guest_exit_status"].is_null());
        let json = outcome(Status::Exited(200)).to_json();
        assert_eq!(
            (json["exit_code"].as_u64(), json["guest_exit_status"].as_i64()),
            (Some(1), Some(200))
        );
    }
}
