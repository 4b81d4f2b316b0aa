//! Every network decision of a run in one place: the socket address check,
//! the guest's socket calls it is told apart by (creating a socket, an
//! explicit bind, a listen), the audited name lookup and the decision on each
//! outgoing HTTP request ([`decide_http`], made in `handle` before wasi-http
//! parses the request), each recording what it refuses in the run's [`NetAudit`].

use super::broker::Broker;
use super::denial::{OriginCounts, Records};
use super::http_bounds::{self, InFlight, LiveBodies};
use super::http_send::{Destination, HttpSender};
use super::{http_meter, http_rules};
use crate::policy::{Limits, NetGrants, NetKind};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{Ipv6Addr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{Host, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress, Network};
use wasmtime_wasi::p2::bindings::sockets::{tcp, tcp_create_socket, udp, udp_create_socket};
use wasmtime_wasi::p2::{SocketResult, TcpSocket, UdpSocket};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsCtxView};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::p2::bindings::http::outgoing_handler;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode as HttpErrorCode, Scheme};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{RequestOptions, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks};

/// One run's network grants and the run's record of refusals, shared by
/// everything that decides a network use: the socket check, the name-lookup
/// wrapper and the HTTP hook. Cloning shares the record.
#[derive(Clone)]
pub(crate) struct NetAudit {
    pub(crate) grants: Arc<NetGrants>,
    pub(super) denials: Records,
    /// For each TCP socket the guest bound (by resource number), whether it
    /// asked for port 0: what a listen on it is decided with. A number is
    /// reused only after its socket is gone, so this holds at most one entry
    /// per socket the handle cap lets the guest hold at once.
    ephemeral_binds: Arc<Mutex<HashMap<u32, bool>>>,
    /// The run's outgoing HTTP requests in flight, capped.
    in_flight: InFlight,
    /// The run's outgoing HTTP bodies, capped.
    pub(crate) bodies: LiveBodies,
    /// Requests allowed so far this run, and `limits.http-requests`.
    requests: Arc<AtomicU64>,
    max_requests: u64,
    /// The run's secrets and placeholders (see [`Broker`]).
    pub(crate) broker: Arc<Broker>,
    /// Requests and bytes per origin, for the report.
    pub(crate) origins: OriginCounts,
    /// What sends the requests allowed, under the per-request limits.
    sender: HttpSender,
}

impl NetAudit {
    /// The run's grants and its HTTP limits (`limits.http-requests` and the
    /// per-request ones), recording refusals in `denials`.
    pub(crate) fn new(grants: &NetGrants, limits: &Limits, denials: Records, broker: Arc<Broker>) -> NetAudit {
        NetAudit {
            sender: HttpSender::new(limits, &grants.ca_certificates),
            grants: Arc::new(grants.clone()),
            denials,
            ephemeral_binds: Arc::default(),
            in_flight: InFlight::default(),
            bodies: LiveBodies::default(),
            requests: Arc::default(),
            max_requests: limits.http_requests.value,
            broker,
            origins: OriginCounts::default(),
        }
    }

    /// Counts one more request to `target`, which `[net] http` allowed,
    /// unless the run has made all `limits.http-requests` allows: then it is
    /// refused as an unlisted origin is, and not counted.
    pub(super) fn count_request(&self, target: HttpTarget) -> Result<HttpTarget, HttpRefusal> {
        let max = self.max_requests;
        match self
            .requests
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
        {
            Ok(_) => Ok(target),
            Err(_) => Err(HttpRefusal {
                target: target.to_string(),
                rule: format!(
                    "limits.http-requests allows {max} outgoing HTTP requests per run, and this run has made them all; raise limits.http-requests for more"
                ),
                code: HttpErrorCode::HttpRequestDenied,
            }),
        }
    }

    /// Records a refused use of `kind` on `target` (see [`Records::refuse`]).
    pub(crate) fn refuse(&self, kind: &'static str, target: &str, rule: &str) {
        self.denials.refuse(kind, target, rule);
    }

    /// Counts (and audits) a granted use of `kind` on `target`.
    pub(crate) fn allow(&self, kind: &'static str, target: impl FnOnce() -> String) {
        self.denials.allow(kind, target, || format!("granted by [net] {kind}"));
    }

    /// Sends a request the policy allowed to `target` with wasmcell's sender
    /// ([`HttpSender`]), unless [`http_bounds::MAX_HTTP_IN_FLIGHT`] are in
    /// flight already: then the guest gets `connection-limit-reached` and can
    /// retry once one ends.
    fn send_bounded(
        &self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        target: HttpTarget,
    ) -> Box<dyn Future<Output = http_bounds::SendResult> + Send> {
        let Some(slot) = self.in_flight.try_start() else {
            return Box::new(std::future::ready(Err(
                wasmtime_wasi_http::Error::ConnectionLimitReached,
            )));
        };
        let to = Destination {
            tls: target.scheme == HttpScheme::Https,
            host: target.host.trim_start_matches('[').trim_end_matches(']').to_string(),
            port: target.port,
            shown: target.to_string(),
        };
        let sender = self.sender.clone();
        let records = self.denials.clone();
        http_bounds::hold_slot(
            slot,
            Box::new(async move { sender.send(request, options, to, records).await }),
        )
    }
}

/// Grants exactly the `[net]` entries. TCP sockets exist only when some TCP
/// use is granted, UDP sockets only when some UDP use is (creating one
/// otherwise is refused and recorded by [`create_tcp_socket`] and
/// [`create_udp_socket`]); every address a socket then uses reaches the check
/// below and is decided, and a refusal recorded.
pub(super) fn add_network(builder: &mut WasiCtxBuilder, net: &NetAudit) {
    builder
        .allow_tcp(net.grants.any_tcp())
        .allow_udp(net.grants.any_udp())
        .allow_ip_name_lookup(net.grants.dns);
    let net = net.clone();
    builder.socket_addr_check(move |addr, usage| {
        let allowed = match decide(&net.grants, addr, usage, CURRENT_CALL.get()) {
            Verdict::Allow(Some(kind)) => {
                net.allow(kind, || addr.to_string());
                true
            }
            Verdict::Allow(None) => true,
            Verdict::Drop => false,
            Verdict::Deny(kind, rule) => {
                net.refuse(kind.name(), &addr.to_string(), &rule);
                false
            }
        };
        Box::pin(std::future::ready(allowed))
    });
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Granted: a use of this kind, or (`None`) one that only follows from
    /// another (an implicit bind, an incoming datagram), not counted.
    Allow(Option<&'static str>),
    /// Refused and recorded.
    Deny(NetKind, String),
    /// Refused silently: an incoming datagram the guest never asked for.
    Drop,
}

/// Whether one socket use is granted; `call` is the guest's socket call
/// wasmtime-wasi is running when it asks (see [`SocketCall`]).
///
/// A bind the guest asked for (`start-bind`) is always decided against
/// `tcp-bind`/`udp-bind`, whatever its address: the unspecified address only
/// by an entry that names it. wasmtime-wasi also checks the implicit bind that
/// `connect` and `send` perform, on the unspecified address and port 0, outside
/// any `start-bind`; that only picks the local end and is allowed, since the
/// connect or send that follows is what the policy decides. A listen is decided
/// on the address and port the socket is bound to. Accepting a client is only
/// possible on a listener the policy granted; datagrams are received only when
/// some UDP use is granted.
fn decide(net: &NetGrants, addr: SocketAddr, usage: SocketAddrUse, call: Option<SocketCall>) -> Verdict {
    let implicit_bind = call != Some(SocketCall::Bind) && addr.ip().is_unspecified() && addr.port() == 0;
    let verdict = |kind: NetKind, checked: Result<(), String>| match checked {
        Ok(()) => Verdict::Allow(Some(kind.name())),
        Err(rule) => Verdict::Deny(kind, rule),
    };
    let check = |kind: NetKind| verdict(kind, net.check(kind, addr));
    match usage {
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind if implicit_bind => Verdict::Allow(None),
        SocketAddrUse::TcpBind => check(NetKind::TcpBind),
        SocketAddrUse::TcpListen => {
            // Port 0 here is the implicit bind of an unbound socket's listen.
            let ephemeral = call == Some(SocketCall::Listen { ephemeral: true }) || addr.port() == 0;
            verdict(NetKind::TcpListen, net.check_listen(addr, ephemeral))
        }
        SocketAddrUse::TcpConnect => check(NetKind::TcpConnect),
        SocketAddrUse::TcpAccept => Verdict::Allow(Some("tcp-accept")),
        SocketAddrUse::UdpBind => check(NetKind::UdpBind),
        SocketAddrUse::UdpSend => check(NetKind::UdpSend),
        SocketAddrUse::UdpReceive if net.any_udp() => Verdict::Allow(None),
        SocketAddrUse::UdpReceive => Verdict::Drop,
    }
}

/// The guest's socket call that wasmtime-wasi is running, which the address
/// check cannot see: it is handed only an address and a use. An explicit bind
/// of `0.0.0.0:0` and the implicit bind inside a connect reach it alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SocketCall {
    /// `start-bind`, TCP or UDP.
    Bind,
    /// `start-listen`, on a socket whose bind asked for port 0 (`ephemeral`)
    /// or for a port of its own.
    Listen { ephemeral: bool },
}

thread_local! {
    /// Set only while [`in_call`] polls a call's future on this thread. The
    /// address check runs synchronously inside that poll, so it sees the call
    /// it belongs to; a check made anywhere else (a connect's or a send's
    /// future, polled by another host call or on a runtime thread) sees `None`.
    static CURRENT_CALL: Cell<Option<SocketCall>> = const { Cell::new(None) };
}

/// Runs `fut`, wasmtime-wasi's own implementation of `call`, marking every
/// poll of it as that call.
async fn in_call<F: Future>(call: SocketCall, fut: F) -> F::Output {
    struct Restore(Option<SocketCall>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT_CALL.set(self.0);
        }
    }
    let mut fut = pin!(fut);
    std::future::poll_fn(|cx| {
        let _restore = Restore(CURRENT_CALL.replace(Some(call)));
        fut.as_mut().poll(cx)
    })
    .await
}

fn sockets<'a>(ctx: &'a mut WasiCtx, table: &'a mut ResourceTable) -> WasiSocketsCtxView<'a> {
    WasiSocketsCtxView {
        ctx: ctx.sockets(),
        table,
    }
}

/// A `wasi:sockets` result as the guest receives it: an error code, or a
/// trap (an invalid handle) that ends the guest.
fn settle<T>(result: SocketResult<T>) -> wasmtime::Result<Result<T, ErrorCode>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(err) => err.downcast().map(Err),
    }
}

/// The guest's `create-tcp-socket`: refused with `access-denied` and recorded
/// (kind `tcp-socket`, target the address family) when the policy grants no
/// TCP use, as wasmtime-wasi refuses it when TCP is off; otherwise
/// wasmtime-wasi's, with an exhausted descriptor table answered as
/// `new-socket-limit`.
///
/// # Errors
///
/// Only a trap of wasmtime-wasi's own call (the handle cap).
pub(crate) fn create_tcp_socket(
    net: &NetAudit,
    ctx: &mut WasiCtx,
    table: &mut ResourceTable,
    family: IpAddressFamily,
) -> wasmtime::Result<Result<Resource<TcpSocket>, ErrorCode>> {
    if !net.grants.any_tcp() {
        let rule = "no [net] tcp-connect or tcp-bind entry: TCP sockets are not granted";
        net.refuse("tcp-socket", family_name(family), rule);
        return Ok(Err(ErrorCode::AccessDenied));
    }
    let created = tcp_create_socket::Host::create_tcp_socket(&mut sockets(ctx, table), family);
    settle(created).map(|r| r.map_err(|code| socket_limit(code, family, false)))
}

/// The guest's `create-udp-socket`, as [`create_tcp_socket`] for UDP (kind
/// `udp-socket`, granted by any `udp-bind` or `udp-send` entry).
///
/// # Errors
///
/// Only a trap of wasmtime-wasi's own call (the handle cap).
pub(crate) async fn create_udp_socket(
    net: &NetAudit,
    ctx: &mut WasiCtx,
    table: &mut ResourceTable,
    family: IpAddressFamily,
) -> wasmtime::Result<Result<Resource<UdpSocket>, ErrorCode>> {
    if !net.grants.any_udp() {
        let rule = "no [net] udp-bind or udp-send entry: UDP sockets are not granted";
        net.refuse("udp-socket", family_name(family), rule);
        return Ok(Err(ErrorCode::AccessDenied));
    }
    let created = udp_create_socket::Host::create_udp_socket(&mut sockets(ctx, table), family).await;
    settle(created).map(|r| r.map_err(|code| socket_limit(code, family, true)))
}

fn family_name(family: IpAddressFamily) -> &'static str {
    match family {
        IpAddressFamily::Ipv4 => "ipv4",
        IpAddressFamily::Ipv6 => "ipv6",
    }
}

/// wasmtime-wasi maps a socket the OS would not create for want of
/// descriptors (`EMFILE`, `ENFILE`) to `unknown`; when creating one fails that
/// way, ask the OS for one more of the same kind to tell that case apart. (If
/// a descriptor came free in between, the guest still gets `unknown`.)
fn socket_limit(code: ErrorCode, family: IpAddressFamily, udp: bool) -> ErrorCode {
    #[cfg(unix)]
    if matches!(code, ErrorCode::Unknown) {
        use rustix::net::{AddressFamily, SocketFlags, SocketType};
        let family = match family {
            IpAddressFamily::Ipv4 => AddressFamily::INET,
            IpAddressFamily::Ipv6 => AddressFamily::INET6,
        };
        let kind = if udp { SocketType::DGRAM } else { SocketType::STREAM };
        if let Err(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE) =
            rustix::net::socket_with(family, kind, SocketFlags::CLOEXEC, None)
        {
            return ErrorCode::NewSocketLimit;
        }
    }
    #[cfg(not(unix))]
    let _ = (family, udp);
    code
}

/// The guest's `start-bind` on a TCP socket, run by wasmtime-wasi as an
/// explicit bind: the address check decides it against `tcp-bind` (never as an
/// implicit bind), and whether it asked for port 0 is kept for its listen.
///
/// # Errors
///
/// Only a trap of wasmtime-wasi's own call (an invalid handle).
pub(crate) async fn tcp_start_bind(
    net: &NetAudit,
    ctx: &mut WasiCtx,
    table: &mut ResourceTable,
    this: Resource<TcpSocket>,
    network: Resource<Network>,
    local: IpSocketAddress,
) -> wasmtime::Result<Result<(), ErrorCode>> {
    let (socket, ephemeral) = (this.rep(), SocketAddr::from(local).port() == 0);
    let mut view = sockets(ctx, table);
    let bind = tcp::HostTcpSocket::start_bind(&mut view, this, network, local);
    let bound = in_call(SocketCall::Bind, bind).await;
    {
        let mut binds = net.ephemeral_binds.lock().unwrap_or_else(|e| e.into_inner());
        match bound {
            Ok(()) => binds.insert(socket, ephemeral),
            Err(_) => binds.remove(&socket),
        };
    }
    settle(bound)
}

/// The guest's `start-listen` on a TCP socket: the address check decides it on
/// the address and port the socket is bound to, knowing whether its bind asked
/// for port 0.
///
/// # Errors
///
/// Only a trap of wasmtime-wasi's own call (an invalid handle).
pub(crate) async fn tcp_start_listen(
    net: &NetAudit,
    ctx: &mut WasiCtx,
    table: &mut ResourceTable,
    this: Resource<TcpSocket>,
) -> wasmtime::Result<Result<(), ErrorCode>> {
    let ephemeral = {
        let binds = net.ephemeral_binds.lock().unwrap_or_else(|e| e.into_inner());
        binds.get(&this.rep()).copied().unwrap_or(false)
    };
    let mut view = sockets(ctx, table);
    let listen = tcp::HostTcpSocket::start_listen(&mut view, this);
    settle(in_call(SocketCall::Listen { ephemeral }, listen).await)
}

/// The guest's `start-bind` on a UDP socket, an explicit bind as for TCP.
///
/// # Errors
///
/// Only a trap of wasmtime-wasi's own call (an invalid handle).
pub(crate) async fn udp_start_bind(
    ctx: &mut WasiCtx,
    table: &mut ResourceTable,
    this: Resource<UdpSocket>,
    network: Resource<Network>,
    local: IpSocketAddress,
) -> wasmtime::Result<Result<(), ErrorCode>> {
    let mut view = sockets(ctx, table);
    let bind = udp::HostUdpSocket::start_bind(&mut view, this, network, local);
    settle(in_call(SocketCall::Bind, bind).await)
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
    net.allow("dns", || name.clone());
    let mut view = WasiSocketsCtxView {
        ctx: ctx.sockets(),
        table,
    };
    match Host::resolve_addresses(&mut view, network, name) {
        Ok(stream) => Ok(Ok(stream)),
        Err(err) => err.downcast().map(Err),
    }
}

/// The scheme a request that names none is sent with, as wasmtime-wasi-http
/// does by default.
const DEFAULT_HTTP_SCHEME: HttpScheme = HttpScheme::Https;

/// The schemes `[net] http` can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpScheme {
    Http,
    Https,
}

impl HttpScheme {
    pub(super) fn name(self) -> &'static str {
        match self {
            HttpScheme::Http => "http",
            HttpScheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            HttpScheme::Http => 80,
            HttpScheme::Https => 443,
        }
    }

    pub(super) fn wasi(self) -> Scheme {
        match self {
            HttpScheme::Http => Scheme::Http,
            HttpScheme::Https => Scheme::Https,
        }
    }
}

/// Where an allowed outgoing HTTP request goes: the host sends it there, to
/// an authority rebuilt from these three, and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpTarget {
    pub(crate) scheme: HttpScheme,
    /// Lower-cased; an IPv6 address in brackets, written canonically.
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl HttpTarget {
    /// The authority the request is sent to and names in its `Host` header:
    /// the host, then the port unless it is the scheme's own.
    pub(crate) fn authority(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How an `http` use is recorded: `scheme://host:port`, the port always written.
impl fmt::Display for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.name(), self.host, self.port)
    }
}

/// An outgoing HTTP request refused before wasi-http sees it.
#[derive(Debug)]
pub(crate) struct HttpRefusal {
    /// What is recorded: the decided `scheme://host:port`, or, for a request
    /// that got no further, its scheme and authority as the guest wrote them
    /// with any userinfo replaced by `***`.
    pub(crate) target: String,
    /// Why, naming `[net] http`.
    pub(crate) rule: String,
    /// What the guest is answered.
    pub(crate) code: HttpErrorCode,
}

/// Decides one outgoing HTTP request from the scheme and authority the guest
/// set, before anything parses, resolves or connects to them.
///
/// A request without a scheme is `https`; scheme names are compared without
/// regard to case. The authority must be `host[:port]`: a name of letters,
/// digits, `-`, `.` and `_`, or an IP address (IPv6 in brackets), and a port
/// from 1 to 65535 (the scheme's own when absent). The host is lower-cased and
/// an IPv6 address written canonically before it is matched against the
/// `[net] http` entries.
///
/// # Errors
///
/// The refusal, with the code wasmtime-wasi-http itself gives where it has
/// one: `HttpProtocolError` for a scheme other than `http` and `https`,
/// `HttpRequestUriInvalid` for a request without an authority; otherwise
/// (userinfo, a malformed authority, no matching entry) `HttpRequestDenied`.
pub(crate) fn decide_http(
    grants: &NetGrants,
    scheme: Option<&Scheme>,
    authority: Option<&str>,
) -> Result<HttpTarget, HttpRefusal> {
    let (name, scheme) = match scheme {
        None => (Cow::Borrowed(DEFAULT_HTTP_SCHEME.name()), Some(DEFAULT_HTTP_SCHEME)),
        Some(Scheme::Http) => (Cow::Borrowed("http"), Some(HttpScheme::Http)),
        Some(Scheme::Https) => (Cow::Borrowed("https"), Some(HttpScheme::Https)),
        Some(Scheme::Other(other)) => {
            let name = other.to_ascii_lowercase();
            let scheme = [HttpScheme::Http, HttpScheme::Https]
                .into_iter()
                .find(|s| s.name() == name);
            (Cow::Owned(name), scheme)
        }
    };
    let written = authority.unwrap_or_default();
    let refuse = |code, rule: &str| HttpRefusal {
        target: format!("{name}://{}", redact_userinfo(written)),
        rule: rule.to_string(),
        code,
    };
    let Some(scheme) = scheme else {
        return Err(refuse(
            HttpErrorCode::HttpProtocolError,
            "[net] http grants only `http` and `https` requests",
        ));
    };
    if written.is_empty() {
        return Err(refuse(
            HttpErrorCode::HttpRequestUriInvalid,
            "the request names no authority, and [net] http grants a host and port",
        ));
    }
    if written.contains('@') {
        return Err(refuse(
            HttpErrorCode::HttpRequestDenied,
            "[net] http refuses an authority with userinfo (`user@`); send credentials in a header",
        ));
    }
    let Some((host, port)) = split_host_port(written, scheme.default_port()) else {
        return Err(refuse(
            HttpErrorCode::HttpRequestDenied,
            "[net] http needs an authority `host[:port]` with a port from 1 to 65535",
        ));
    };
    let target = HttpTarget { scheme, host, port };
    match grants.check_http(scheme.name(), &target.host, port) {
        Ok(()) => Ok(target),
        Err(rule) => Err(HttpRefusal {
            target: target.to_string(),
            rule,
            code: HttpErrorCode::HttpRequestDenied,
        }),
    }
}

/// `authority` with everything up to its last `@` (the userinfo, by the
/// reading `http::uri::Authority` gives it) replaced by `***`.
fn redact_userinfo(authority: &str) -> Cow<'_, str> {
    match authority.rsplit_once('@') {
        Some((_, host)) => Cow::Owned(format!("***@{host}")),
        None => Cow::Borrowed(authority),
    }
}

/// The checked host (see [`decide_http`]) and port of a `host[:port]`
/// authority without userinfo, or `None` if it is not one.
fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, rest) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (ip, rest) = v6.split_once(']')?;
            (format!("[{}]", ip.parse::<Ipv6Addr>().ok()?), rest)
        }
        None => {
            let (host, rest) = authority.split_at(authority.find(':').unwrap_or(authority.len()));
            let name_byte = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
            if host.is_empty() || !host.bytes().all(name_byte) {
                return None;
            }
            (host.to_ascii_lowercase(), rest)
        }
    };
    let port = match rest.strip_prefix(':') {
        None if rest.is_empty() => default_port,
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            port.parse().ok().filter(|&port| port != 0)?
        }
        _ => return None,
    };
    Some((host, port))
}

/// The `wasi:http/outgoing-handler` `handle` call, decided first: wasmcell
/// reads the request's scheme and authority from the table, decides them
/// ([`decide_http`]), then its method and path against `[[net.http]]`
/// ([`NetGrants::decide_request`]), looks for a secret's placeholder where it
/// may not go ([`Broker::find_leak`]), counts the request against
/// `limits.http-requests` and records the use; a refused request is dropped
/// and answered with the refusal's code before wasi-http parses, resolves or
/// connects anything. An allowed one gets the decided scheme, an authority
/// rebuilt from the decided host and port, the normalised path its entry
/// decided and the entry's headers and secrets ([`Broker::rewrite`]), then
/// goes to wasmtime-wasi-http's own `handle`, so the host connects only there.
///
/// # Errors
///
/// When the request or options handle is not in the table, or wasi-http's
/// own `handle` fails with something other than an error code: both end the
/// guest, as they do in wasmtime-wasi-http.
pub(crate) fn handle_http(
    net: &mut NetAudit,
    table: &mut ResourceTable,
    http: &mut WasiHttpCtx,
    request: Resource<HostOutgoingRequest>,
    options: Option<Resource<RequestOptions>>,
) -> wasmtime::Result<Result<Resource<HostFutureIncomingResponse>, HttpErrorCode>> {
    // A guest still holding the request's `headers` handle could read back
    // what is injected; wasi-http's `handle` refuses (traps on) such a
    // request anyway, so nothing is injected into it.
    let headers_held = table.iter_children(&request)?.next().is_some();
    let parts = table.get_mut(&request)?;
    match http_rules::decide_and_rewrite(net, parts, headers_held) {
        Ok(()) => {}
        Err((kind, refusal)) => {
            net.refuse(kind, &net.broker.redact(&refusal.target), &refusal.rule);
            // `handle` owns both handles: the guest gave them up with the call.
            table.delete(request)?;
            if let Some(options) = options {
                table.delete(options)?;
            }
            return Ok(Err(refusal.code));
        }
    }
    let mut view = WasiHttpCtxView {
        hooks: net,
        table,
        ctx: http,
    };
    match outgoing_handler::Host::handle(&mut view, request, options) {
        Ok(response) => Ok(Ok(response)),
        Err(err) => err.downcast().map(Err),
    }
}

/// Sends what [`handle_http`] decided and recorded. wasi-http built the
/// request from the decided scheme and rebuilt authority; they are decided
/// once more here, without a record, so that nothing reaching this hook
/// another way is sent where no `[net] http` entry admits.
impl WasiHttpHooks for NetAudit {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = http_bounds::SendResult> + Send> {
        let uri = request.uri();
        let scheme = uri.scheme_str().map(|s| Scheme::Other(s.to_string()));
        let authority = uri.authority().map(|a| a.as_str());
        // The response's errors reach the guest through the returned future
        // and the body; nothing is sent on `fut`.
        drop(fut);
        let Ok(target) = decide_http(&self.grants, scheme.as_ref(), authority) else {
            return Box::new(std::future::ready(Err(wasmtime_wasi_http::Error::HttpRequestDenied)));
        };
        let net = self.clone();
        let origin = target.to_string();
        http_meter::metered(&net, &origin, request, |request| {
            self.send_bounded(request, options, target)
        })
    }

    /// One write to an outgoing body carries at most this much, and two are
    /// queued at most (see [`http_bounds`]).
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        http_bounds::HTTP_BODY_CHUNK
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::NetRule;
    use SocketAddrUse::*;

    fn grants(tcp_bind: &[&str], udp_bind: &[&str]) -> NetGrants {
        let rules = |entries: &[&str]| entries.iter().map(|e| NetRule::parse(e).unwrap()).collect();
        NetGrants {
            tcp_connect: vec![NetRule::parse("127.0.0.1:*").unwrap()],
            tcp_bind: rules(tcp_bind),
            udp_bind: rules(udp_bind),
            ..NetGrants::default()
        }
    }

    fn decided(net: &NetGrants, addr: &str, usage: SocketAddrUse, call: Option<SocketCall>) -> Verdict {
        decide(net, addr.parse().unwrap(), usage, call)
    }

    fn allowed(kind: &'static str) -> Verdict {
        Verdict::Allow(Some(kind))
    }

    #[test]
    fn explicit_binds_are_decided_and_implicit_ones_exempt() {
        let bind = Some(SocketCall::Bind);
        let net = grants(&["0.0.0.0:8080", "[::]:8080"], &["127.0.0.1:0"]);
        // A connect's or send's implicit bind: checked outside any start-bind.
        assert_eq!(decided(&net, "0.0.0.0:0", TcpBind, None), Verdict::Allow(None));
        assert_eq!(decided(&net, "[::]:0", UdpBind, None), Verdict::Allow(None));
        // The same address asked for by the guest is decided, and refused here.
        for (addr, usage) in [("0.0.0.0:0", TcpBind), ("[::]:0", TcpBind), ("0.0.0.0:0", UdpBind)] {
            let verdict = decided(&net, addr, usage, bind);
            assert!(matches!(verdict, Verdict::Deny(..)), "{addr} {usage:?}: {verdict:?}");
        }
        assert_eq!(decided(&net, "0.0.0.0:8080", TcpBind, bind), allowed("tcp-bind"));
        assert_eq!(decided(&net, "127.0.0.1:0", UdpBind, bind), allowed("udp-bind"));
        // Anything but the unspecified address at port 0 is never taken as implicit.
        assert!(matches!(decided(&net, "127.0.0.1:0", TcpBind, None), Verdict::Deny(..)));
        // An entry naming the unspecified address at port 0 admits the explicit bind.
        let net = grants(&["0.0.0.0:0"], &[]);
        assert_eq!(decided(&net, "0.0.0.0:0", TcpBind, bind), allowed("tcp-bind"));
    }

    #[test]
    fn listens_are_decided_on_the_bound_port() {
        let net = grants(&["0.0.0.0:8080", "127.0.0.1:0"], &[]);
        let listen = |ephemeral| Some(SocketCall::Listen { ephemeral });
        assert_eq!(
            decided(&net, "0.0.0.0:8080", TcpListen, listen(false)),
            allowed("tcp-listen")
        );
        assert_eq!(
            decided(&net, "127.0.0.1:41234", TcpListen, listen(true)),
            allowed("tcp-listen")
        );
        for (addr, ephemeral) in [
            ("0.0.0.0:41234", true),
            ("127.0.0.1:41234", false),
            ("10.0.0.1:8080", false),
        ] {
            let verdict = decided(&net, addr, TcpListen, listen(ephemeral));
            assert!(
                matches!(verdict, Verdict::Deny(NetKind::TcpListen, _)),
                "{addr}: {verdict:?}"
            );
        }
    }

    #[test]
    fn the_call_mark_lasts_only_while_its_future_is_polled() {
        assert_eq!(CURRENT_CALL.get(), None);
        let seen = futures::executor::block_on(in_call(SocketCall::Bind, async { CURRENT_CALL.get() }));
        assert_eq!(seen, Some(SocketCall::Bind));
        assert_eq!(CURRENT_CALL.get(), None);
    }
}

#[cfg(test)]
mod http_tests {
    use super::*;
    use crate::policy::HttpRule;

    fn grants(entries: &[&str]) -> NetGrants {
        NetGrants {
            http: entries.iter().map(|e| HttpRule::parse(e).unwrap()).collect(),
            ..NetGrants::default()
        }
    }

    /// Each row: the scheme a guest sets (`-` for none), its authority (`-`
    /// for none), then the decided target and the authority it is sent to,
    /// or the recorded target and the error code.
    const CASES: &[(&str, &str, &str, &str)] = &[
        ("http", "127.0.0.1:8080", "http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("http", "127.0.0.1:08080", "http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("HTTP", "127.0.0.1:8080", "http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("-", "API.Example.com", "https://api.example.com:443", "api.example.com"),
        (
            "https",
            "api.example.com:443",
            "https://api.example.com:443",
            "api.example.com",
        ),
        ("http", "[0:0::1]:9", "http://[::1]:9", "[::1]:9"),
        ("http", "[::1]", "http://[::1]:80", "[::1]"),
        ("ftp", "127.0.0.1:8080", "ftp://127.0.0.1:8080", "HttpProtocolError"),
        ("ftp", "u:pw@h", "ftp://***@h", "HttpProtocolError"),
        ("http", "-", "http://", "HttpRequestUriInvalid"),
        ("-", "-", "https://", "HttpRequestUriInvalid"),
        (
            "http",
            "u:pw@127.0.0.1:8080",
            "http://***@127.0.0.1:8080",
            "HttpRequestDenied",
        ),
        (
            "http",
            "a@b:pw@127.0.0.1:8080",
            "http://***@127.0.0.1:8080",
            "HttpRequestDenied",
        ),
        ("http", "127.0.0.1:", "http://127.0.0.1:", "HttpRequestDenied"),
        ("http", "127.0.0.1:0", "http://127.0.0.1:0", "HttpRequestDenied"),
        ("http", "127.0.0.1:65536", "http://127.0.0.1:65536", "HttpRequestDenied"),
        ("http", "127.0.0.1:+80", "http://127.0.0.1:+80", "HttpRequestDenied"),
        ("http", ":8080", "http://:8080", "HttpRequestDenied"),
        ("http", "a!b:8080", "http://a!b:8080", "HttpRequestDenied"),
        ("http", "[::1%lo]:80", "http://[::1%lo]:80", "HttpRequestDenied"),
        ("http", "[::1]x", "http://[::1]x", "HttpRequestDenied"),
        ("http", "127.0.0.1:8081", "http://127.0.0.1:8081", "HttpRequestDenied"),
        ("https", "127.0.0.1:8080", "https://127.0.0.1:8080", "HttpRequestDenied"),
        ("-", "127.0.0.1:8080", "https://127.0.0.1:8080", "HttpRequestDenied"),
    ];

    #[test]
    fn http_requests_are_decided_on_their_checked_parts() {
        let net = grants(&["http://127.0.0.1:8080", "https://api.example.com", "http://[::1]:*"]);
        for &(scheme, authority, target, then) in CASES {
            let scheme = match scheme {
                "-" => None,
                "http" => Some(Scheme::Http),
                "https" => Some(Scheme::Https),
                other => Some(Scheme::Other(other.to_string())),
            };
            let authority = Some(authority).filter(|&a| a != "-");
            let got = match decide_http(&net, scheme.as_ref(), authority) {
                Ok(decided) => (decided.to_string(), decided.authority()),
                Err(refusal) => {
                    assert!(refusal.rule.contains("[net] http"), "{refusal:?}");
                    let code = format!("{:?}", refusal.code);
                    (refusal.target, code.trim_start_matches("ErrorCode::").to_string())
                }
            };
            assert_eq!(got, (target.to_string(), then.to_string()), "{scheme:?} {authority:?}");
        }
    }
}
