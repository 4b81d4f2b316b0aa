//! Turning a [`Policy`] into the guest's WASI view: preopened directories,
//! environment, arguments, stdio, clocks, randomness and network grants, and
//! recording every capability use the policy refuses ([`Denial`]).
//!
//! Everything starts from `WasiCtxBuilder::new()`, which grants nothing, and
//! only what the policy names is added. Sockets are switched on so that every
//! use reaches one check here: each socket address, each name lookup
//! ([`resolve_addresses`], wired in by the engine's linker) and each outgoing
//! HTTP request is decided against the policy's `[net]` grants, and a refusal
//! is recorded in the run's bounded [`DenialLog`].

use crate::limits::{LimitExceeded, OutputBudget, Stream};
use crate::policy::{Access, Clocks, Input, NetGrants, NetKind, Output, Policy};
use crate::term::{eprint_line, sanitize, truncate};
use anyhow::{Context as _, Result};
use bytes::Bytes;
use serde::Serialize;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{Host, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, Network};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsCtxView};
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpHooks;

/// Most refusals one run records in [`Outcome::denials`]; later ones are only
/// counted, in [`Outcome::denials_dropped`].
pub const MAX_DENIALS: usize = 256;

/// Longest `target` or `rule` of a recorded [`Denial`], in bytes; a longer
/// one is cut on a character boundary and ends with `…[+N bytes]`.
pub const DENIAL_FIELD_BYTES: usize = 256;

/// Most bytes of `kind`, `target` and `rule` that one run's recorded
/// denials hold together. Once a refusal would pass it, that one and every
/// later one is only counted.
pub const DENIAL_BYTES: usize = 64 * 1024;

/// A capability use the policy refused. Filled by the network capability;
/// the filesystem reports refusals to the guest as errors only.
///
/// The guest chooses `target` (a host name it looked up, say), so it is
/// untrusted text: it is cut to [`DENIAL_FIELD_BYTES`], and wasmcell escapes
/// its control characters before printing it. Escape it yourself before
/// showing it on a terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// The kind of use, such as `tcp-connect`.
    pub kind: String,
    /// What the guest tried to reach.
    pub target: String,
    /// Why it was refused.
    pub rule: String,
}

/// Per-run I/O choices that are not part of the policy: what an embedding
/// host passes for one run.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunIo {
    /// Bytes to feed as stdin, replacing the policy's stdin.
    pub stdin: Option<bytes::Bytes>,
    /// Capture stdout/stderr that the policy sends to "inherit" into memory.
    pub capture: bool,
    /// Print each refused capability use to stderr as it happens.
    pub log_denials: bool,
}

/// One run's network grants and the record of what they refused, shared by
/// everything that decides a network use: the socket check, the name-lookup
/// wrapper and the HTTP hook. Cloning shares the record.
#[derive(Clone)]
pub(crate) struct NetAudit {
    pub(crate) grants: Arc<NetGrants>,
    denials: Arc<Mutex<DenialLog>>,
    log: bool,
}

/// The refusals of one run, bounded: a guest can refuse itself as often as
/// it likes, with names as long as it likes, and none of that may grow the
/// host's memory or output past these caps.
#[derive(Default)]
struct DenialLog {
    kept: Vec<Denial>,
    /// Bytes of `kind`, `target` and `rule` in `kept`.
    bytes: usize,
    /// Refusals counted but not kept; once one is dropped, all later ones are.
    dropped: u64,
}

impl DenialLog {
    /// Keeps `denial` if it fits; `false` when it was only counted.
    fn push(&mut self, denial: Denial) -> bool {
        let size = denial.kind.len() + denial.target.len() + denial.rule.len();
        if self.dropped > 0 || self.kept.len() >= MAX_DENIALS || self.bytes + size > DENIAL_BYTES {
            self.dropped += 1;
            return false;
        }
        self.bytes += size;
        self.kept.push(denial);
        true
    }
}

impl NetAudit {
    /// A fresh record for one run; `log` also prints each refusal to stderr.
    pub(crate) fn new(grants: &NetGrants, log: bool) -> NetAudit {
        NetAudit {
            grants: Arc::new(grants.clone()),
            denials: Arc::default(),
            log,
        }
    }

    /// Records a refused use of `kind` on `target`, printing it first when
    /// asked to. `target` is the guest's choice: it is cut to
    /// [`DENIAL_FIELD_BYTES`] and printed escaped. Past the record's caps a
    /// refusal is only counted, and one line says so.
    pub(crate) fn refuse(&self, kind: &str, target: &str, rule: &str) {
        let denial = Denial {
            kind: kind.to_string(),
            target: truncate(target, DENIAL_FIELD_BYTES).into_owned(),
            rule: truncate(rule, DENIAL_FIELD_BYTES).into_owned(),
        };
        let mut log = self.denials.lock().unwrap_or_else(|e| e.into_inner());
        let kept = log.push(denial);
        if !self.log {
            return;
        }
        // Printed under the lock, so the lines come in the record's order.
        if let (true, Some(d)) = (kept, log.kept.last()) {
            eprint_line(format_args!(
                "wasmcell: denied {} {}: {}",
                d.kind,
                sanitize(&d.target),
                sanitize(&d.rule)
            ));
        } else if log.dropped == 1 {
            eprint_line(format_args!(
                "wasmcell: further refusals are only counted (`denials_dropped` in the report); {} recorded",
                log.kept.len()
            ));
        }
    }

    /// Everything refused so far: the kept records and how many were dropped.
    pub(crate) fn take(&self) -> (Vec<Denial>, u64) {
        let log = std::mem::take(&mut *self.denials.lock().unwrap_or_else(|e| e.into_inner()));
        (log.kept, log.dropped)
    }
}

/// Output captured from one run, shared with the streams that fill it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Captured {
    pub stdout: Arc<Mutex<Vec<u8>>>,
    pub stderr: Arc<Mutex<Vec<u8>>>,
}

impl Policy {
    /// Builds the guest's WASI context for one run.
    ///
    /// `argv` is the guest's full argument vector, `argv[0]` included.
    ///
    /// # Security
    ///
    /// Grants exactly the policy's directories, environment and stdio. The
    /// host opens the directories and stdio files the policy names itself,
    /// with its own authority, so it opens them without following symbolic
    /// links (see [`crate::hostfs`]): a guest with write access may have
    /// replaced any of them with a link since the policy was resolved.
    pub(crate) fn wasi_builder(
        &self,
        argv: &[String],
        io: &RunIo,
        budget: &Arc<OutputBudget>,
        captured: &Captured,
        net: &NetAudit,
    ) -> Result<WasiCtxBuilder> {
        let mut builder = WasiCtxBuilder::new();
        builder.args(argv);
        add_env(&mut builder, self);
        add_preopens(&mut builder, self)?;
        add_stdio(&mut builder, self, io, budget, captured)?;
        add_clocks(&mut builder, self.clocks());
        add_random(&mut builder, self.seed());
        add_network(&mut builder, net);
        Ok(builder)
    }
}

fn add_env(builder: &mut WasiCtxBuilder, policy: &Policy) {
    builder.envs(&policy.guest_env());
}

fn add_preopens(builder: &mut WasiCtxBuilder, policy: &Policy) -> Result<()> {
    for dir in policy.dirs() {
        let perms = match dir.access {
            Access::ReadOnly => FsPerms::ReadOnly,
            Access::ReadWrite => FsPerms::ReadWrite,
        };
        // wasmtime-wasi only takes a path, which it opens following links. A
        // guest with a read-write grant around this one (or in an earlier
        // run) may have replaced a folder on the way with a link, so open
        // the canonical path ourselves without following any, then hand
        // wasmtime-wasi the descriptor's own path: reopening
        // `/proc/self/fd/N` yields that same directory, not whatever the
        // name points to now. From here on the guest reaches files only
        // through wasmtime-wasi's handle; ours is closed at the end of the loop.
        let fd = crate::hostfs::open_dir(&dir.host, &format!("directory granted at `{}`", dir.guest))?;
        builder
            .preopened_dir(crate::hostfs::reopen_path(&fd, &dir.host), &dir.guest, perms)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to open preopen `{}`", dir.host.display()))?;
    }
    Ok(())
}

fn add_stdio(
    builder: &mut WasiCtxBuilder,
    policy: &Policy,
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
    builder.stdout(BudgetedOutput {
        sink: stdout,
        stream: Stream::Stdout,
        budget: budget.clone(),
    });
    builder.stderr(BudgetedOutput {
        sink: stderr,
        stream: Stream::Stderr,
        budget: budget.clone(),
    });
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
    budget: Arc<OutputBudget>,
}

impl BudgetedOutput {
    /// Writes what the budget allows; `Err(LimitExceeded)` when it fell short.
    fn write_budgeted(&self, bytes: &[u8]) -> Result<(), WriteError> {
        let granted = self.budget.reserve(self.stream, bytes.len());
        self.sink.write_all(&bytes[..granted]).map_err(WriteError::Io)?;
        if granted < bytes.len() {
            return Err(WriteError::Limit(LimitExceeded::Output {
                limit: self.budget.limit(),
            }));
        }
        Ok(())
    }
}

enum WriteError {
    Io(std::io::Error),
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
        self.write_budgeted(&bytes).map_err(|e| match e {
            WriteError::Io(e) => StreamError::LastOperationFailed(wasmtime::Error::new(e)),
            // A trap ends the guest now, carrying the typed cause.
            WriteError::Limit(limit) => StreamError::Trap(wasmtime::Error::new(limit)),
        })
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.sink
            .flush()
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::Error::new(e)))
    }

    fn check_write(&mut self) -> StreamResult<usize> {
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
        Poll::Ready(match self.write_budgeted(buf) {
            Ok(()) => Ok(buf.len()),
            Err(WriteError::Io(e)) => Err(e),
            Err(WriteError::Limit(limit)) => Err(std::io::Error::other(limit)),
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.sink.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Grants exactly the `[net]` entries. Sockets themselves are always
/// available, so that every refused use reaches the check below and is
/// recorded; a socket the policy grants nothing to can be created (counted
/// against `limits.handles`) but cannot listen, connect, send or receive.
fn add_network(builder: &mut WasiCtxBuilder, net: &NetAudit) {
    builder
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(net.grants.dns);
    let net = net.clone();
    builder.socket_addr_check(move |addr, usage| {
        let allowed = match decide(&net.grants, addr, usage) {
            Verdict::Allow => true,
            Verdict::Drop => false,
            Verdict::Deny(kind, rule) => {
                net.refuse(kind.name(), &addr.to_string(), &rule);
                false
            }
        };
        Box::pin(std::future::ready(allowed))
    });
}

enum Verdict {
    Allow,
    /// Refused and recorded.
    Deny(NetKind, String),
    /// Refused silently: an incoming datagram the guest never asked for.
    Drop,
}

/// Whether one socket use is granted.
///
/// wasmtime-wasi also checks the implicit bind that `connect` and `send`
/// perform, on the wildcard address and port 0. That only picks the local
/// end, so it is always allowed: the connect or send that follows is what the
/// policy decides, and a socket bound that way cannot listen without a
/// `tcp-bind` entry. Accepting a client is only possible on a listener the
/// policy granted; datagrams are received only when some UDP use is granted.
fn decide(net: &NetGrants, addr: SocketAddr, usage: SocketAddrUse) -> Verdict {
    let implicit_bind = addr.ip().is_unspecified() && addr.port() == 0;
    let check = |kind| match net.check(kind, addr) {
        Ok(()) => Verdict::Allow,
        Err(rule) => Verdict::Deny(kind, rule),
    };
    match usage {
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind if implicit_bind => Verdict::Allow,
        SocketAddrUse::TcpBind => check(NetKind::TcpBind),
        SocketAddrUse::TcpListen => check(NetKind::TcpListen),
        SocketAddrUse::TcpConnect => check(NetKind::TcpConnect),
        SocketAddrUse::TcpAccept => Verdict::Allow,
        SocketAddrUse::UdpBind => check(NetKind::UdpBind),
        SocketAddrUse::UdpSend => check(NetKind::UdpSend),
        SocketAddrUse::UdpReceive if net.any_udp() => Verdict::Allow,
        SocketAddrUse::UdpReceive => Verdict::Drop,
    }
}

/// The `wasi:sockets` `resolve-addresses` call, audited: a lookup the
/// policy does not grant (`[net] dns = false`) is recorded in the run's
/// denials and answered as wasmtime-wasi itself answers when lookups are off;
/// a granted one is handed to wasmtime-wasi unchanged.
///
/// # Errors
///
/// Only when wasmtime-wasi's own lookup fails with something other than a
/// `wasi:sockets` error code (which ends the guest).
pub(crate) fn resolve_addresses(
    net: &NetAudit,
    ctx: &mut WasiCtx,
    table: &mut ResourceTable,
    network: Resource<Network>,
    name: String,
) -> wasmtime::Result<Result<Resource<ResolveAddressStream>, ErrorCode>> {
    if !net.grants.dns {
        net.refuse("dns", &name, "[net] dns is false: name lookups are not granted");
        return Ok(Err(ErrorCode::PermanentResolverFailure));
    }
    let mut view = WasiSocketsCtxView {
        ctx: ctx.sockets(),
        table,
    };
    match Host::resolve_addresses(&mut view, network, name) {
        Ok(stream) => Ok(Ok(stream)),
        Err(err) => err.downcast().map(Err),
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

/// The `net.http` allowlist, consulted before every outgoing `wasi:http`
/// request; an allowed request is sent by wasmtime-wasi-http unchanged.
impl WasiHttpHooks for NetAudit {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        if let Err(rule) = self.grants.check_http(&scheme, &host, port) {
            self.refuse("http", &format!("{scheme}://{host}:{port}"), &rule);
            return Box::new(std::future::ready(Err(wasmtime_wasi_http::Error::HttpRequestDenied)));
        }
        wasmtime_wasi_http::default_hooks().send_request(request, options, fut)
    }
}

fn add_clocks(builder: &mut WasiCtxBuilder, clocks: &Clocks) {
    match clocks {
        Clocks::Host { resolution: None } => {}
        Clocks::Host { resolution: Some(step) } => {
            builder.wall_clock(CoarseWallClock { step: *step });
            builder.monotonic_clock(CoarseMonotonicClock {
                start: Instant::now(),
                step: *step,
            });
        }
        Clocks::Frozen { start } => {
            let since_epoch = start.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            builder.wall_clock(FrozenWallClock(since_epoch));
            builder.monotonic_clock(FrozenMonotonicClock);
        }
    }
}

fn round_down(value: Duration, step: Duration) -> Duration {
    let step_ns = step.as_nanos().max(1);
    let ns = value.as_nanos() / step_ns * step_ns;
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// The host's wall clock with readings rounded down to `step`.
struct CoarseWallClock {
    step: Duration,
}

impl HostWallClock for CoarseWallClock {
    fn resolution(&self) -> Duration {
        self.step
    }

    fn now(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        round_down(now, self.step)
    }
}

/// The host's monotonic clock with readings rounded down to `step`.
struct CoarseMonotonicClock {
    start: Instant,
    step: Duration,
}

impl HostMonotonicClock for CoarseMonotonicClock {
    fn resolution(&self) -> u64 {
        u64::try_from(self.step.as_nanos()).unwrap_or(u64::MAX)
    }

    fn now(&self) -> u64 {
        u64::try_from(round_down(self.start.elapsed(), self.step).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A wall clock that always shows the same instant.
struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// A monotonic clock that stands at zero.
struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

fn add_random(builder: &mut WasiCtxBuilder, seed: Option<u64>) {
    use rand::SeedableRng as _;
    let Some(seed) = seed else { return };
    // Distinct streams for the secure and insecure interfaces, both derived
    // from the one seed, so that neither can predict the other's position.
    builder.secure_random(rand::rngs::StdRng::seed_from_u64(seed));
    builder.insecure_random(rand::rngs::StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15));
    builder.insecure_random_seed(u128::from(seed) << 64 | u128::from(seed.rotate_left(32)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_log_keeps_a_prefix_within_count_and_bytes() {
        let audit = NetAudit::new(&NetGrants::default(), false);
        for i in 0..MAX_DENIALS + 10 {
            audit.refuse("dns", &format!("host{i}"), "rule");
        }
        let (kept, dropped) = audit.take();
        assert_eq!((kept.len(), dropped), (MAX_DENIALS, 10));
        assert_eq!(kept[MAX_DENIALS - 1].target, format!("host{}", MAX_DENIALS - 1));

        // Long targets are cut, and the byte budget stops the record before
        // the count does; a short refusal after that is still only counted.
        let audit = NetAudit::new(&NetGrants::default(), false);
        for _ in 0..MAX_DENIALS {
            audit.refuse("dns", &"x".repeat(100_000), &"r".repeat(100_000));
        }
        audit.refuse("dns", "short", "rule");
        let (kept, dropped) = audit.take();
        let bytes: usize = kept.iter().map(|d| d.kind.len() + d.target.len() + d.rule.len()).sum();
        assert!(bytes <= DENIAL_BYTES && !kept.is_empty(), "{bytes}");
        assert!(
            kept.iter()
                .all(|d| d.target.starts_with(&"x".repeat(DENIAL_FIELD_BYTES)))
        );
        assert!(kept.iter().all(|d| {
            d.target
                .ends_with(&format!("…[+{} bytes]", 100_000 - DENIAL_FIELD_BYTES))
        }));
        assert_eq!(kept.len() as u64 + dropped, MAX_DENIALS as u64 + 1);
    }

    #[test]
    fn round_down_to_step() {
        let ms = Duration::from_millis(1);
        assert_eq!(round_down(Duration::from_micros(2_999), ms), Duration::from_millis(2));
        assert_eq!(round_down(Duration::from_millis(5), ms), Duration::from_millis(5));
    }

    #[test]
    fn budgeted_output_writes_up_to_the_limit_then_traps() {
        let budget = Arc::new(OutputBudget::new(5));
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let mut out = BudgetedOutput {
            sink: Sink::Buffer(buffer.clone()),
            stream: Stream::Stdout,
            budget,
        };
        OutputStream::write(&mut out, Bytes::from_static(b"abc")).unwrap();
        match OutputStream::write(&mut out, Bytes::from_static(b"defg")) {
            Err(StreamError::Trap(e)) => assert!(e.downcast_ref::<LimitExceeded>().is_some()),
            other => panic!("expected a trap, got {:?}", other.map_err(|e| e.to_string())),
        }
        assert_eq!(&*buffer.lock().unwrap(), b"abcde");
    }
}
